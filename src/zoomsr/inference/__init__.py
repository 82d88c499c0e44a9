"""Scene inference: georeferenced, seamless, any size, multi-temporal.

- :mod:`~zoomsr.inference.inputs`: find frames (dates) in files/folders/manifests, radiometry.
- :mod:`~zoomsr.inference.grid`: the target grid (EPSG:3857 training grid or native).
- :mod:`~zoomsr.inference.windows`: overlapping windows and blending weights.
- :mod:`~zoomsr.inference.frames`: per-window frame choice and gap filling.
- :mod:`~zoomsr.inference.model`: a model ready for inference (device, precision, layout).
- :mod:`~zoomsr.inference.pipeline`: :func:`run_inference` / :func:`run_scene`; its settings and
  report: :mod:`~zoomsr.inference.options`; what a run records of itself (fingerprint, tags,
  a finished output's checks): :mod:`~zoomsr.inference.run_record`; the LR mosaic and preview
  beside the output: :mod:`~zoomsr.inference.side_outputs`; the progress bar:
  :mod:`~zoomsr.inference.progress`.
- :mod:`~zoomsr.inference.in_memory`: :func:`super_resolve_array` (frames in memory).
- :mod:`~zoomsr.inference.writer`: partial runs and resume (the GeoTIFF/COG itself:
  :mod:`zoomsr.io.geotiff`, written while rows are computed: :mod:`zoomsr.io.geotiff_stream`).
- :mod:`~zoomsr.inference.uncertainty`: spread over frame subsets.
- :mod:`~zoomsr.inference.distributed`: the same pipeline on a Ray cluster.
- :mod:`~zoomsr.inference.s2naip`: S2-NAIP chunk layout input; :mod:`~zoomsr.inference.demo`.

See docs/inference.md.
"""

from zoomsr.devices import resolve_device
from zoomsr.inference.grid import TargetGrid, plan_grid
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.inputs import Discovery, Frame, discover_frames
from zoomsr.inference.model import InferenceModel, build_inference_model, wrap_model
from zoomsr.inference.options import InferenceOptions, InferenceResult
from zoomsr.inference.pipeline import run_inference, run_scene
from zoomsr.inference.windows import Tiling, WindowGrid

__all__ = [
    "Discovery",
    "Frame",
    "InferenceModel",
    "InferenceOptions",
    "InferenceResult",
    "TargetGrid",
    "Tiling",
    "WindowGrid",
    "build_inference_model",
    "discover_frames",
    "plan_grid",
    "resolve_device",
    "run_inference",
    "run_scene",
    "super_resolve_array",
    "wrap_model",
]
