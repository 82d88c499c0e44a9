"""The GeoTIFF written while rows are computed: in a thread, or in a process of its own.

Both must write :func:`write_geotiff`'s bytes, give its errors, and leave nothing behind when
stopped, whichever side stops first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from zoomsr.errors import WriteError
from zoomsr.io.geotiff import column_chunks, write_geotiff
from zoomsr.io.geotiff_stream import GeoTIFFProcess, GeoTIFFStream
from zoomsr.io.raw_raster import RawRaster

_KW = {"crs": "EPSG:32631", "transform": Affine(2.5, 0, 500000, 0, -2.5, 4600000),
       "band_names": ["red", "green", "blue"]}


def _raw(folder, width: int = 700, height: int = 600) -> RawRaster:
    raw = RawRaster(folder / "sr.raw", width, height, 4)
    raw.create()
    rng = np.random.default_rng(1)
    block = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    block[..., 3] = np.where(rng.random((height, width)) < 0.2, 0, 255)
    block[:300, :256, 3] = 0  # a tile with no valid pixel: left out (sparse)
    raw.write_rows(0, block)
    return raw


def _leftovers(folder, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("cog", [False, True])
def test_the_process_writes_the_same_bytes_as_the_thread_and_the_plain_call(tmp_path, cog):
    """Rows handed over strip by strip, in column chunks, to a process: the bytes of one
    plain call and of the thread (the tags at the end), the COG too."""
    raw = _raw(tmp_path)
    chunks = column_chunks(raw.width, [300, 700])
    tags = {"zoomsr_model": "test", "zoomsr_version": "0"}
    write_geotiff(raw, tmp_path / "plain.tif", tags=tags, cog=cog, chunks=chunks, **_KW)
    outs = {}
    for kind in (GeoTIFFStream, GeoTIFFProcess):
        out = tmp_path / f"{kind.__name__}.tif"
        stream = kind(raw, out, cog=cog, chunks=chunks, **_KW)
        stream.start()
        for k in range(len(chunks)):
            for rows in (100, 256, 300, raw.height):
                stream.rows_done(rows, chunk=k)
        stream.finish(tags)
        outs[kind] = out.read_bytes()
    plain = (tmp_path / "plain.tif").read_bytes()
    assert outs[GeoTIFFStream] == plain and outs[GeoTIFFProcess] == plain
    assert _leftovers(tmp_path, {"sr.raw", "plain.tif", "GeoTIFFStream.tif",
                                 "GeoTIFFProcess.tif"}) == []


def test_the_process_reports_its_own_peak_memory(tmp_path):
    """Its own: not the parent's, which Linux's ``ru_maxrss`` of a forked child includes (a
    writer beside a 0.5 GB run reported 0.57 GB)."""
    import resource

    ballast = np.ones(400 * 2**20 // 8)  # this process: > 400 MB resident
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 400 * 1024
    raw = _raw(tmp_path)
    stream = GeoTIFFProcess(raw, tmp_path / "o.tif", **_KW)
    stream.start()
    stream.finish({})
    del ballast
    assert stream.peak_rss_mb is not None and 20 < stream.peak_rss_mb < 300
    assert stream._proc.returncode == 0


@pytest.mark.parametrize("after_rows", [0, 256])
def test_abandoned_in_the_middle_the_process_leaves_nothing(tmp_path, after_rows):
    """Stopped before any row, or with a strip written and the rest not final: the child
    removes its temporary file and exits by itself."""
    raw = _raw(tmp_path)
    out = tmp_path / "o.tif"
    stream = GeoTIFFProcess(raw, out, **_KW)
    stream.start()
    stream.rows_done(after_rows)
    time.sleep(0.3)  # let it write what it may
    stream.abandon()
    assert stream._proc.returncode == 0
    assert not out.exists() and _leftovers(tmp_path, {"sr.raw"}) == []
    stream.abandon()  # again: nothing happens


def _started(stream: GeoTIFFProcess, folder) -> None:
    """Wait until the child has started and made its temporary file."""
    for _ in range(400):
        if list(folder.glob(".o.tif.*.tmp")):
            return
        time.sleep(0.01)
    raise AssertionError("the writer process did not start")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_process_that_dies_is_an_error_naming_the_output(tmp_path, signum):
    """The writer killed (the OOM killer, a segfault in GDAL) or stopped by SIGTERM (a job's
    time limit reaches every process of the job) while it writes: the next call says so in
    one line, keeping the rows for --resume; no output under the name, no temporary file
    left (SIGKILL: removed by this side; SIGTERM: by the child)."""
    raw = _raw(tmp_path)
    out = tmp_path / "o.tif"
    stream = GeoTIFFProcess(raw, out, **_KW)
    stream.start()
    stream.rows_done(256)
    _started(stream, tmp_path)
    stream._proc.send_signal(signum)
    stream._proc.wait()
    code = -9 if signum == signal.SIGKILL else 0  # SIGTERM: it stopped, as told
    assert stream._proc.returncode == code
    if signum == signal.SIGKILL:
        with pytest.raises(WriteError, match=rf"^{out}: the GeoTIFF writer process ended "
                                             rf"unexpectedly \(exit code {code}\); rows "
                                             "computed so far are kept: run the same command "
                                             "with --resume to continue"):
            stream.rows_done(raw.height)
            stream.finish({})
    else:
        with pytest.raises(WriteError, match="ended unexpectedly"):
            stream.finish({})
    stream.abandon()
    assert not out.exists() and _leftovers(tmp_path, {"sr.raw"}) == []


def test_a_process_that_cannot_start_is_replaced_by_a_thread(tmp_path, monkeypatch):
    """No interpreter that runs the child (a frozen application: ``sys.executable`` is the
    application): a warning, and the same file written in this process."""
    from zoomsr.errors import ZoomsrWarning
    from zoomsr.io import geotiff_stream

    raw = _raw(tmp_path)
    write_geotiff(raw, tmp_path / "plain.tif", tags={"a": "b"}, **_KW)
    monkeypatch.setattr(geotiff_stream.sys, "executable", "/bin/false")
    out = tmp_path / "o.tif"
    stream = GeoTIFFProcess(raw, out, **_KW)
    stream.start()
    stream._proc.wait()
    with pytest.warns(ZoomsrWarning, match=f"^{out}: the GeoTIFF writer process could not "
                                           r"start \(exit code 1; see above\): writing it in "
                                           "this process"):
        stream.rows_done(300)
    stream.finish({"a": "b"})
    assert out.read_bytes() == (tmp_path / "plain.tif").read_bytes()


def test_ctrl_c_while_the_child_starts_still_stops_it(tmp_path, monkeypatch):
    """A Ctrl-C landing in ``Popen`` (its wait for the exec) left the child running with
    nobody to stop it, or, between the start and the job, made it print a traceback. It is
    held until the child has its job, then raised; ``abandon`` stops the child."""
    from zoomsr.io import geotiff_stream

    real = subprocess.Popen

    def popen(*args, **kwargs):
        proc = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)  # as a Ctrl-C before Popen returns
        return proc

    monkeypatch.setattr(geotiff_stream.subprocess, "Popen", popen)
    raw = _raw(tmp_path)
    stream = GeoTIFFProcess(raw, tmp_path / "o.tif", **_KW)
    with pytest.raises(KeyboardInterrupt):
        stream.start()
    stream.abandon()
    assert stream._proc.returncode == 0
    assert _leftovers(tmp_path, {"sr.raw"}) == []


def test_an_error_in_the_process_comes_back_as_it_was_raised(tmp_path):
    """A raw raster cut short (what the writer reads is missing) fails in the child; the
    parent raises the same error, at the next rows handed over or at the finish."""
    raw = _raw(tmp_path)
    out = tmp_path / "o.tif"
    stream = GeoTIFFProcess(raw, out, **_KW)
    os.truncate(raw.path, raw.row_bytes * 10)
    stream.start()
    with pytest.raises(Exception) as info:
        stream.rows_done(raw.height)
        stream.finish({})
    stream.abandon()
    assert type(info.value).__name__ == "DataError"
    assert str(info.value).startswith(f"{raw.path}: {raw.row_bytes * 10} bytes, not the ")
    assert not out.exists() and _leftovers(tmp_path, {"sr.raw"}) == []


_PARENT = r'''
import sys, time
from pathlib import Path
from affine import Affine
from zoomsr.io.geotiff_stream import GeoTIFFProcess
from zoomsr.io.raw_raster import RawRaster

tmp = Path(sys.argv[1])
raw = RawRaster(tmp / "sr.raw", 700, 600, 4)
stream = GeoTIFFProcess(raw, tmp / "o.tif", crs="EPSG:3857",
                        transform=Affine(2.4, 0, 0, 0, -2.4, 0), band_names=["r", "g", "b"])
stream.start()
stream.rows_done(256)
print(stream._proc.pid, flush=True)
time.sleep(60)  # killed here
'''


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_when_the_parent_dies_the_process_removes_its_file_and_ends(tmp_path):
    """The run killed (``kill -9``, no chance to say stop): the child sees its pipe close,
    removes its temporary file and exits; no process is left writing."""
    _raw(tmp_path)
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(200):  # the child is not ours: poll for its end (or its zombie, where
        try:  # nothing reaps orphans)
            stat = Path(f"/proc/{child}/stat").read_text()
            state = stat.rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the writer process outlived its parent")
    assert _leftovers(tmp_path, {"sr.raw"}) == []


def test_a_defect_in_the_process_comes_back_with_its_traceback_as_a_note(tmp_path, capfd):
    """An error that is neither the disk's nor the data's (a defect) is raised here as it was
    there, with the child's traceback as a note (shown by ``--debug``), and nothing on the
    terminal: the CLI prints errors in one line."""
    raw = _raw(tmp_path)
    stream = GeoTIFFProcess(raw, tmp_path / "o.tif", bogus=1, **_KW)
    stream.start()
    with pytest.raises(TypeError, match="bogus") as info:
        stream.finish({})
    stream.abandon()
    if sys.version_info >= (3, 11):
        assert "in the GeoTIFF writer process:\nTraceback" in info.value.__notes__[0]
    assert "Traceback" not in capfd.readouterr().err
    assert _leftovers(tmp_path, {"sr.raw"}) == []
