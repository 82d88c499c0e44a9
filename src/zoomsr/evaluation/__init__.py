"""Benchmark runs: pair prediction and target folders, score them, write CSV/JSON reports.

- :func:`zoomsr.evaluation.pairing.pair_images`: match files (S2-NAIP tiles or relative paths).
- :func:`zoomsr.evaluation.run.evaluate`: score every pair; :func:`write_results` writes
  ``per_image.csv`` and ``summary.json``.
"""

from zoomsr.evaluation.images import read_rgb
from zoomsr.evaluation.pairing import ImagePair, Pairing, pair_images
from zoomsr.evaluation.run import (
    EvaluationResult,
    evaluate,
    evaluate_pairing,
    score_pairs,
    write_results,
)

__all__ = [
    "EvaluationResult", "ImagePair", "Pairing", "evaluate", "evaluate_pairing", "pair_images",
    "read_rgb", "score_pairs", "write_results",
]
