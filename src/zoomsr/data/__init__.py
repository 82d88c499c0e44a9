"""S2-NAIP data: layout, dataset, frame selection, sampling, writing and synthetic samples."""

from zoomsr.data.bands import BAND16_DIVISOR, BANDS, normalize_band, validate_bands
from zoomsr.data.layout import PairRecord, scan_pairs
from zoomsr.data.s2naip import DataWarning, S2NAIPDataset, to_layout
from zoomsr.data.sample import write_sample
from zoomsr.data.sampler import ResumableSampler, load_tile_weights, pair_weights, weighted_sampler
from zoomsr.data.selection import select_frames, valid_frames
from zoomsr.data.writer import S2NAIPWriter

__all__ = [
    "BAND16_DIVISOR",
    "BANDS",
    "DataWarning",
    "PairRecord",
    "ResumableSampler",
    "S2NAIPDataset",
    "S2NAIPWriter",
    "load_tile_weights",
    "normalize_band",
    "pair_weights",
    "scan_pairs",
    "select_frames",
    "to_layout",
    "valid_frames",
    "validate_bands",
    "weighted_sampler",
    "write_sample",
]
