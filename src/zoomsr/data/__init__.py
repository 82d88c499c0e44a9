"""S2-NAIP data (layout, dataset, frame selection, sampling, writing, synthetic samples) and
loaders of the other benchmark datasets of the paper's experiments (PROBA-V, WorldStrat,
OLI2MSI)."""

from zoomsr.data.bands import BAND16_DIVISOR, BANDS, normalize_band, validate_bands
from zoomsr.data.datasets import DATASETS, open_dataset
from zoomsr.data.layout import PairRecord, scan_pairs
from zoomsr.data.oli2msi import OLI2MSIDataset, OLI2MSIPair, OLI2MSIWarning, scan_oli2msi
from zoomsr.data.probav import PROBAVDataset, PROBAVImageset, read_norm_csv, scan_probav
from zoomsr.data.s2naip import DataWarning, S2NAIPDataset, to_layout
from zoomsr.data.sample import write_sample
from zoomsr.data.sampler import ResumableSampler, load_tile_weights, pair_weights, weighted_sampler
from zoomsr.data.selection import select_frames, valid_frames
from zoomsr.data.worldstrat import L1C_BANDS, L2A_BANDS, WorldStratDataset, WorldStratWarning
from zoomsr.data.writer import S2NAIPWriter

__all__ = [
    "BAND16_DIVISOR",
    "BANDS",
    "DATASETS",
    "DataWarning",
    "L1C_BANDS",
    "L2A_BANDS",
    "OLI2MSIDataset",
    "OLI2MSIPair",
    "OLI2MSIWarning",
    "PROBAVDataset",
    "PairRecord",
    "PROBAVImageset",
    "ResumableSampler",
    "S2NAIPDataset",
    "S2NAIPWriter",
    "WorldStratDataset",
    "WorldStratWarning",
    "load_tile_weights",
    "normalize_band",
    "open_dataset",
    "pair_weights",
    "read_norm_csv",
    "scan_oli2msi",
    "scan_pairs",
    "scan_probav",
    "select_frames",
    "to_layout",
    "valid_frames",
    "validate_bands",
    "weighted_sampler",
    "write_sample",
]
