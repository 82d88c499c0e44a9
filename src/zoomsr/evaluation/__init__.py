"""Benchmark runs: pair prediction and target folders, score them, write CSV/JSON reports.

- :func:`zoomsr.evaluation.pairing.pair_images`: match files (S2-NAIP tiles or relative paths).
- :func:`zoomsr.evaluation.run.evaluate`: score every pair; :func:`write_results` writes
  ``per_image.csv`` and ``summary.json``. Nodata pixels (masks, nodata values, alpha) are left
  out of the scores by default (``nodata="exclude"``; ``valid_fraction`` per image).
- :func:`zoomsr.evaluation.model_eval.evaluate_model`: a model's outputs on a dataset (S2-NAIP,
  PROBA-V, WorldStrat, OLI2MSI) scored against its HR images and masks, no files in between.
- :func:`zoomsr.evaluation.benchmark.run_benchmark`: models x datasets x metrics from a YAML
  file (:func:`~zoomsr.evaluation.benchmark_spec.load_spec`), resumable cell by cell; its
  report (:func:`~zoomsr.evaluation.benchmark_report.write_report`): tables, paired
  differences, a plot.
"""

from zoomsr.evaluation.images import NODATA_MODES, read_rgb, read_rgb_masked
from zoomsr.evaluation.model_eval import evaluate_model
from zoomsr.evaluation.pairing import ImagePair, Pairing, pair_images
from zoomsr.evaluation.run import (
    EvaluationResult,
    NoValidOverlap,
    evaluate,
    evaluate_pairing,
    score_pairs,
    write_results,
)

__all__ = [
    "NODATA_MODES", "EvaluationResult", "ImagePair", "NoValidOverlap", "Pairing", "evaluate",
    "evaluate_model", "evaluate_pairing", "pair_images", "read_rgb", "read_rgb_masked",
    "score_pairs", "write_results",
]
