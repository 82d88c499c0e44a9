"""The files a scene run writes beside its output, when asked for: the resampled LR mosaic
(``--save-lr``, ``OUT.lr.tif``) and the PNG preview (``--preview``, ``OUT.preview.png``);
and the tag that says which of them a finished output's run wrote."""

from __future__ import annotations

import json
from pathlib import Path

from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.inputs.files import zoomsr_tags
from zoomsr.inference.options import InferenceOptions
from zoomsr.inference.preview import write_preview
from zoomsr.io.geotiff import write_geotiff
from zoomsr.io.raw_raster import RawRaster


def side_outputs(out: Path, save_lr: bool, preview: bool) -> dict[str, Path]:
    """The files written beside ``out``: the LR mosaic and the PNG preview, when asked for."""
    paths = {}
    if save_lr:
        paths["lr"] = out.with_name(out.stem + ".lr.tif")
    if preview:
        paths["preview"] = out.with_name(out.stem + ".preview.png")
    return paths


def write_side_outputs(out: Path, options: InferenceOptions, lr: RawRaster | None,
                       grid: TargetGrid, tags: dict[str, str], content: str
                       ) -> tuple[Path | None, Path | None]:
    """Write, beside the finished ``out``, the LR mosaic ``lr`` (when saved; tagged with
    ``content``) and the PNG preview (when asked for); return their paths (or None)."""
    sides = side_outputs(out, options.save_lr, options.preview)
    if lr is not None:
        write_geotiff(lr, sides["lr"], crs=grid.crs, transform=grid.transform,
                      band_names=["red", "green", "blue"],
                      tags={**tags, "zoomsr_content": content}, cog=options.cog,
                      deflate_level=options.deflate_level)
    if options.preview:
        write_preview(out, sides["preview"])
    _drop_other_side_outputs(out, sides, options.overwrite)
    return sides.get("lr"), sides.get("preview")


def _an_lr_mosaic(path: Path) -> bool:
    """Whether ``path`` is an LR mosaic zoomsr wrote (its ``zoomsr_content`` tag), not
    another run's super-resolved output saved under that name."""
    tags = zoomsr_tags(path) or {}
    return "LR mosaic" in tags.get("zoomsr_content", "")  # (scenes' and S2-NAIP chunks')


def _drop_other_side_outputs(out: Path, written: dict[str, Path], overwrite: bool) -> None:
    """The side outputs this run did not write, left beside ``out`` by an earlier run (an
    LR mosaic of other weights, a preview of another image): removed with ``overwrite``
    (an LR mosaic only if zoomsr wrote it as one), else named in a warning."""
    for key, path in side_outputs(out, True, True).items():
        if key in written or not path.is_file():
            continue
        if overwrite and (key == "preview" or _an_lr_mosaic(path)):
            path.unlink(missing_ok=True)
            continue
        import warnings

        from zoomsr.errors import ZoomsrWarning

        what = "LR mosaic" if key == "lr" else "preview"
        article = "an" if key == "lr" else "a"
        why = (f"not {article} {what} zoomsr wrote, so --overwrite keeps it" if overwrite else
               "left by another run: remove it, or pass --overwrite")
        warnings.warn(f"{path}: not this run's (it wrote no {what}; {why})", ZoomsrWarning,
                      stacklevel=2)


def side_outputs_tag(options: InferenceOptions) -> dict[str, str]:
    """The output's ``zoomsr_side_outputs`` tag: which side outputs its run wrote (``lr``,
    ``preview``), so that a file of another run under such a name is not taken for its own."""
    return {"zoomsr_side_outputs": json.dumps(
        sorted(side_outputs(Path("x.tif"), options.save_lr, options.preview)))}
