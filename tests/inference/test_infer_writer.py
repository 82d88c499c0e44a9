"""The partial run: its raw files are named when they cannot be made or written."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.io.raw_raster import RawRaster


@pytest.mark.skipif(not hasattr(__import__("os"), "pwrite"), reason="POSIX only")
def test_a_raw_file_that_cannot_be_made_or_written_is_named_and_no_folder_is_left(tmp_path,
                                                                                  monkeypatch):
    """A file-size limit (`ulimit -f`, a FAT32 disk) or a full disk: one line naming the raw
    file (it was a bare "OSError: [Errno 27] File too large"), and no empty partial folder
    left beside the output (the docs say an error before the first row leaves none)."""
    import errno
    import os
    import resource

    from zoomsr.errors import ZoomsrError
    from zoomsr.inference.writer import PartialRun, partial_dir

    out = tmp_path / "o.tif"
    run = PartialRun(out, {"k": 1})
    raster = run.raw("sr", 4096, 4096, 4)  # 64 MiB, sparse
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))  # Python ignores SIGXFSZ
    try:
        with pytest.raises(ZoomsrError) as info:
            run.start([raster], resume=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(info.value).startswith(f"{raster.path}: cannot create the run's raw file of "
                                      f"{4096 * 4096 * 4} bytes (File too large")
    assert not partial_dir(out).exists()

    small = RawRaster(tmp_path / "s.raw", 8, 2, 3)
    small.create()

    def full(fd, data, offset):  # noqa: ANN001
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    for write in (lambda: small.write_rows(0, np.zeros((1, 8, 3), np.uint8)),
                  lambda: small.write_block(0, 2, np.zeros((1, 4, 3), np.uint8))):
        with pytest.raises(ZoomsrError, match=f"{small.path}: cannot write "
                                              r"\(No space left on device\)"):
            write()
