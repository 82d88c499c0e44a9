"""Model weights: the registry of published checkpoints, the cache, and the ncnn importer.

- :mod:`zoomsr.weights.registry`: :data:`REGISTRY`, :func:`download`, :func:`resolve`,
  :func:`cache_dir` (``$ZOOMSR_CACHE`` or ``~/.cache/zoomsr``).
- :mod:`zoomsr.weights.ncnn`: reader of the ncnn ``.param``/``.bin`` format and the conversion of
  Real-ESRGAN x4plus into a zoomsr RRDBNet.
"""

from zoomsr.weights.registry import (
    DEFAULT_WEIGHTS,
    REGISTRY,
    WeightsEntry,
    WeightsNotAvailableError,
    cache_dir,
    download,
    get_entry,
    is_cached,
    resolve,
    weights_path,
)

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
