"""require_writable_folder: one check for every command that writes into a folder."""

import pytest

import zoomsr.io.folders
from zoomsr.errors import InputError
from zoomsr.io.folders import require_writable_folder


def test_created_only_when_asked(tmp_path):
    target = tmp_path / "a" / "b"
    assert require_writable_folder(target, create=False) == target
    assert not (tmp_path / "a").exists()  # checked in the nearest existing parent
    require_writable_folder(target)
    assert target.is_dir() and list(target.iterdir()) == []  # the probe leaves nothing


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"^.*/file: exists and is not a folder$"):
        require_writable_folder(tmp_path / "file")
    with pytest.raises(InputError, match=r"^--out .*/file/x: cannot be created: "
                                         r".*/file is not a folder$"):
        require_writable_folder(tmp_path / "file" / "x", f"--out {tmp_path / 'file' / 'x'}",
                                create=False)
    with pytest.raises(InputError, match=r"^o.tif: .*/file/x cannot be created"):
        require_writable_folder(tmp_path / "file" / "x", "o.tif")
    assert (tmp_path / "file").read_text() == ""


@pytest.mark.parametrize("create", [True, False])
def test_writing_is_tried_not_guessed(tmp_path, monkeypatch, create):
    """A read-only mount passes a permission-bit check: the probe file is what counts."""
    def refused(dir):  # noqa: A002
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(zoomsr.io.folders.tempfile, "TemporaryFile", refused)
    with pytest.raises(InputError, match=rf"^out: cannot write in {tmp_path} "
                                         r"\(Read-only file system\)$"):
        require_writable_folder(tmp_path, "out", create=create)
