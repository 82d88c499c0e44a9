"""zoomsr: super-resolution of Sentinel-2 time series (10 m -> 2.5 m), its metrics, data,
models, training and georeferenced scene inference.

Where things are (each a subpackage; the command line, ``zoomsr --help``, drives the same code):

- :mod:`zoomsr.inference`: ``run_inference`` (GeoTIFF scenes in, one georeferenced 4x GeoTIFF
  out), ``build_inference_model``, ``super_resolve_array`` (arrays in memory),
  ``discover_frames``, ``InferenceOptions``, ``Tiling``.
- :mod:`zoomsr.models`: ``create_model(name, **config)``, ``load_checkpoint``,
  ``from_checkpoint``, ``save_checkpoint``; SRCNN, HighRes-net, RRDBNet (ESRGAN), U-Net
  discriminator, SR3.
- :mod:`zoomsr.metrics`: PSNR, SSIM, cPSNR, LPIPS, CLIPScore (``create_metrics("psnr,ssim")``)
  and :mod:`zoomsr.metrics.agreement` (metrics vs human judgments).
- :mod:`zoomsr.evaluation`: ``evaluate(pred_dir, target_dir, metrics)`` over folders.
- :mod:`zoomsr.data`: ``S2NAIPDataset``, ``S2NAIPWriter``, ``write_sample``;
  :mod:`zoomsr.data.builder` makes S2-NAIP pairs from raw Sentinel-2 and aerial rasters.
- :mod:`zoomsr.training`: ``load_config``, ``train`` (Lightning).
- :mod:`zoomsr.weights`: the registry of published checkpoints (``download``, ``resolve``).
- :mod:`zoomsr.errors`: the exceptions (``ZoomsrError`` and its kinds); ``ZoomsrWarning``.
"""

__version__ = "0.1.0"
