"""Model weights: the registry of published checkpoints, the cache, and the ncnn importer.

- :mod:`zoomsr.weights.registry`: :data:`REGISTRY` of the published checkpoints,
  :func:`get_entry`, the defaults.
- :mod:`zoomsr.weights.cache`: :func:`cache_dir` (``$ZOOMSR_CACHE`` or ``~/.cache/zoomsr``),
  :func:`weights_path`, the SHA-256 recorded at first use.
- :mod:`zoomsr.weights.checks`: whether a file is a checkpoint of an entry's architecture.
- :mod:`zoomsr.weights.fetch`: :func:`download`, :func:`resolve`, verification of cached files.
- :mod:`zoomsr.weights.ncnn`: reader of the ncnn ``.param``/``.bin`` format and the conversion of
  Real-ESRGAN x4plus into a zoomsr RRDBNet.
"""

from zoomsr.weights.cache import cache_dir, is_cached, weights_path
from zoomsr.weights.fetch import WeightsNotAvailableError, download, resolve
from zoomsr.weights.registry import DEFAULT_WEIGHTS, REGISTRY, WeightsEntry, get_entry

__all__ = [
    "DEFAULT_WEIGHTS",
    "REGISTRY",
    "WeightsEntry",
    "WeightsNotAvailableError",
    "cache_dir",
    "download",
    "get_entry",
    "is_cached",
    "resolve",
    "weights_path",
]
