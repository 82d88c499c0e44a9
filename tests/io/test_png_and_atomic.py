import numpy as np
import pytest

from zoomsr.errors import DataError
from zoomsr.io import atomic_path, atomic_write_text, read_png, write_png


def test_png_round_trip_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (64, 32), dtype=np.uint16)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", grey16)
    write_png(tmp_path / "b.png", rgb)
    a, b = read_png(tmp_path / "a.png"), read_png(tmp_path / "b.png")
    assert a.dtype == np.uint16 and np.array_equal(a, grey16)
    assert b.dtype == np.uint8 and np.array_equal(b, rgb)
    assert a.flags.writeable


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.png: file not found"):
        read_png(tmp_path / "nope.png")
    with pytest.raises(DataError, match="is a folder"):
        read_png(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"hello")
    with pytest.raises(DataError, match=r"bad.png: not a readable image"):
        read_png(tmp_path / "bad.png")
    write_png(tmp_path / "ok.png", np.zeros((64, 64, 3), np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.png"):
        read_png(tmp_path / "cut.png")


def test_write_refuses_unsupported_arrays(tmp_path):
    with pytest.raises(DataError, match="uint8 or uint16"):
        write_png(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    with pytest.raises(DataError, match="single-channel"):
        write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.uint16))
    assert not list(tmp_path.iterdir())


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    from zoomsr.io import atomic

    atomic_write_text(tmp_path / "x.txt", "hi")
    mode = stat.S_IMODE((tmp_path / "x.txt").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == atomic._FILE_MODE == 0o666 & ~umask  # not mkstemp's 0600


def test_refuse_existing_names_every_existing_output(tmp_path):
    from zoomsr.errors import InputError
    from zoomsr.io import refuse_existing

    a, b, c = tmp_path / "a.csv", tmp_path / "b.json", tmp_path / "c.png"
    a.write_text("x")
    c.write_text("x")
    refuse_existing([b], overwrite=False)  # nothing there yet
    refuse_existing([a, c], overwrite=True)
    with pytest.raises(InputError, match=r"a.csv, .*c.png: already exists \(pass --overwrite"):
        refuse_existing([a, b, c], overwrite=False)


def test_csv_text_round_trips_floats():
    import csv
    import io

    from zoomsr.io.tables import csv_text

    rows = [{"k": "x", "v": 0.1 + 0.2}, {"k": "y", "v": 3}]
    text = csv_text(rows, ["k", "v"])
    back = list(csv.DictReader(io.StringIO(text)))
    assert float(back[0]["v"]) == 0.1 + 0.2 and back[1] == {"k": "y", "v": "3"}
    assert csv_text([]) == ""


def test_a_16_bit_colour_png_is_refused_not_read_as_its_high_byte(tmp_path):
    """Pillow reads 16-bit RGB as 8-bit, keeping the high byte: 0..255 stored in 16 bits came
    out near black and `evaluate` scored it (PSNR 6.9) without a word."""
    import warnings

    import rasterio

    data = np.random.default_rng(0).integers(0, 256, (3, 16, 16)).astype(np.uint16)
    path = tmp_path / "rgb16.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no georeference: rasterio's warning
        with rasterio.open(path, "w", driver="PNG", width=16, height=16, count=3,
                           dtype="uint16") as ds:
            ds.write(data)
    assert path.read_bytes()[24] == 16  # IHDR: 16 bits per sample
    with pytest.raises(DataError, match=r"^\S+rgb16.png: 16-bit colour PNG, which is read as "
                                        r"8-bit \(its high byte only\); save it as 8-bit RGB$"):
        read_png(path)  # once, not inside "corrupt or truncated image (...)"


_LIMITED = r'''
import resource, signal, sys
from pathlib import Path
from zoomsr.errors import WriteError
from zoomsr.io.atomic import atomic_write_all

out = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit: EFBIG, as a full disk fails
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    atomic_write_all({out / "per_image.csv": "a" * 100, out / "summary.json": "b" * 5000})
except WriteError as exc:
    print(exc)
'''


def test_write_all_is_all_or_none_when_a_write_fails(tmp_path):
    """`evaluate` on a full disk left per_image.csv without summary.json (the re-run then
    refused it), with a bare "OSError: [Errno 28]"."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{tmp_path / 'summary.json'}: cannot write (File too large)"
    assert list(tmp_path.iterdir()) == []  # neither file, no temporary one


def test_output_lock_goes_on_without_flock_with_a_warning(tmp_path, monkeypatch):
    """Lustre without -o flock (ENOSYS), NFS without a lock daemon (ENOLCK): every run failed
    with a bare OSError."""
    import errno
    import fcntl

    from zoomsr.errors import ZoomsrWarning
    from zoomsr.io.atomic import output_lock

    def unsupported(fd, op):  # noqa: ANN001
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)
    ran = False
    with pytest.warns(ZoomsrWarning, match=r"o.tif: no lock taken \(No locks available: the "
                                           r"filesystem does not support flock\)"), \
            output_lock(tmp_path / "o.tif"):
        ran = True
    assert ran and list(tmp_path.iterdir()) == []


def test_output_lock_never_holds_a_file_removed_meanwhile(tmp_path, monkeypatch):
    """A run that opened the lock file just before the previous holder removed it locked the
    removed file: a later run then locked a new one, and both ran."""
    import fcntl
    import os

    from zoomsr.errors import InputError
    from zoomsr.io.atomic import output_lock

    lock = tmp_path / ".o.tif.zoomsr-lock"
    lock.write_bytes(b"")
    stale = os.open(lock, os.O_RDWR)  # opened by this run; then the holder removes the file
    lock.unlink()
    real_open, opened = os.open, []

    def open_(path, flags, mode=0o777):  # noqa: ANN001
        opened.append(path)
        return stale if len(opened) == 1 else real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", open_)
    with output_lock(tmp_path / "o.tif"):
        monkeypatch.setattr(os, "open", real_open)
        assert len(opened) == 2 and lock.is_file()  # took the file at the path instead
        other = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        with pytest.raises(InputError, match="another zoomsr run is writing it"), \
                output_lock(tmp_path / "o.tif"):
            pass
    assert not lock.exists()


def test_write_errors_after_a_failed_write_are_said_as_the_write(tmp_path, monkeypatch):
    """On a full disk, reopening the cut GeoTIFF to tag it raised rasterio's TypeError "not
    recognized as being in a supported file format", naming the temporary file (exit 1)."""
    from zoomsr.errors import WriteError
    from zoomsr.io import gdal_errors

    out = tmp_path / "o.tif"
    # not a write's failure: left as it is
    with pytest.raises(TypeError), gdal_errors.write_errors_raised(out):
        raise TypeError("a bug")
    monkeypatch.setattr(gdal_errors, "_disk_full", lambda path: True)
    with pytest.raises(WriteError, match=rf"^{out}: cannot write \(no space left on its "
                                         r"device; '.*\.tmp' not recognized"), \
            gdal_errors.write_errors_raised(out):
        raise TypeError(f"'{tmp_path / '.o.tif.x.tif.tmp'}' not recognized as being in a "
                        "supported file format.")
    assert WriteError("x").exit_code == 1  # not the user's input


def test_a_jpeg_named_png_is_refused(tmp_path):
    """A JPEG saved under a .png name was read like the dataset's lossless PNGs."""
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "tci.png", format="JPEG")
    with pytest.raises(DataError, match=r"tci\.png: a JPEG file named \.png; save it as a PNG"):
        read_png(tmp_path / "tci.png")
    Image.fromarray(rgb).save(tmp_path / "x.jpg", format="JPEG")
    assert read_png(tmp_path / "x.jpg").shape == (16, 16, 3)  # a .jpg is read as what it is
