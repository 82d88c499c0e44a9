"""What a benchmark runs: models x datasets x metrics, read from a YAML file.

::

    metrics: [psnr, ssim, cpsnr, lpips]
    metric_options: {border: 4, lpips_weights: /weights/alexnet.pth}
    compare_to: bicubic            # paired differences against this model (default: the first)
    examples: 4                    # items per dataset shown side by side (examples_D.png)
    models:
      - {name: bicubic, baseline: bicubic}
      - {name: esrgan-8, weights: esrgan-8}            # a registry name
      - {name: mine, weights: runs/a/generator.pth, datasets: [s2naip-val]}
      - {name: other-method, predictions: outputs/, datasets: [s2naip-val]}  # by tile
      - {name: challenge-entry, predictions: submission/, datasets: [probav-nir]}  # by id
    datasets:
      - {name: s2naip-val, dataset: s2naip, data: /data/s2naip, split: val}
      - {name: probav-nir, dataset: probav, data: /data/probav, options: {bands: NIR}}

Relative paths are taken from the file's folder. Every problem is one :class:`ConfigError`
naming the file and the key (``models[2].weights``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoomsr.errors import ConfigError

#: Names of models and datasets: they name the result folders.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: ``metric_options`` keys (those of :class:`~zoomsr.metrics.factory.MetricOptions` a
#: benchmark sets; device, dtype and batch size are the run's).
METRIC_OPTION_KEYS = ("border", "cpsnr_mode", "lpips_net", "lpips_weights",
                      "lpips_linear_weights", "clip_model", "clip_pretrained", "clip_mode",
                      "clip_cache_dir", "allow_download", "perceptual_min_valid")
_PATH_OPTIONS = ("lpips_weights", "lpips_linear_weights", "clip_cache_dir")


@dataclass(frozen=True)
class ModelEntry:
    """One model: ``weights`` (a checkpoint file or registry name), ``baseline``, or
    ``predictions`` (a method's outputs as files: on S2-NAIP paired by tile, on the benchmark
    datasets one file per item named by its id, read as the dataset reads its HR)."""

    name: str
    weights: str | None = None
    baseline: str | None = None
    model: str | None = None  # the architecture, for weights that do not name theirs
    config: dict[str, Any] = field(default_factory=dict)
    n_images: int | None = None
    datasets: tuple[str, ...] | None = None  # only these dataset entries (default: all)
    sample_steps: int | None = None  # SR3: DDIM steps per item (default: the model's, 50)
    #: S2-NAIP: a folder of tile images, or a zoomsr infer mosaic; PROBA-V, WorldStrat,
    #: OLI2MSI: a folder of ID.png / ID.tif files (e.g. a PROBA-V challenge submission)
    predictions: Path | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: a loader (:data:`~zoomsr.data.datasets.DATASETS`) over ``data``."""

    name: str
    dataset: str
    data: Path
    split: str | None = None
    splits: Path | None = None  # a zoomsr train run's splits.json that ``split`` is taken from
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkSpec:
    """Models x datasets x metrics, and how they are scored."""

    models: tuple[ModelEntry, ...]
    datasets: tuple[DatasetEntry, ...]
    metrics: tuple[str, ...] = ("psnr", "ssim", "cpsnr")
    metric_options: dict[str, Any] = field(default_factory=dict)
    compare_to: str | None = None  # a model's name; None: the first model
    masks: bool = True  # score the HR masks' valid pixels only (hr_valid)
    seed: int = 0
    examples: int = 4  # items per dataset shown side by side (examples_DATASET.png)
    path: Path | None = None  # the file it was read from

    def cells(self) -> list[tuple[ModelEntry, DatasetEntry]]:
        """The (model, dataset) pairs to score, models first, in the file's order."""
        return [(m, d) for m in self.models for d in self.datasets
                if m.datasets is None or d.name in m.datasets]

    @property
    def baseline(self) -> str:
        """The model the others are compared with."""
        return self.compare_to or self.models[0].name


def _where(path: Path | None) -> str:
    return f"{path}: " if path is not None else ""


def _check_keys(doc: Mapping[str, Any], allowed: tuple[str, ...], what: str, where: str
                ) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}{what}: unknown key(s) {', '.join(map(str, unknown))} "
                          f"(known: {', '.join(allowed)})")


def _name(value: Any, what: str, where: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ConfigError(f"{where}{what}: {value!r} was read as a number; quote it "
                          f"('{value}') to use it as a name")
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"{where}{what}: {value!r} is not a name of letters, digits, '.', "
                          "'_' or '-' (up to 64, not starting with '.', '_' or '-'): it names "
                          "the result folder")
    return value


def _path(value: Any, base: Path, what: str, where: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ConfigError(f"{where}{what}: expected a path, got {value!r}")
    p = Path(os.path.expanduser(str(value)))
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _opt_int(value: Any, what: str, where: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}{what}: expected an integer >= {minimum}, got {value!r}")
    return value


def _mapping(value: Any, what: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}{what}: expected a mapping (key: value), got {value!r}")
    return {str(k): v for k, v in value.items()}


def _list(value: Any, what: str, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}{what}: expected a non-empty list")
    return value


def _weights_path(weights: str, base: Path) -> str:
    """A model's ``weights``: a file beside the spec (or at an absolute path), else a registry
    name, else a path taken from the spec's folder (so that its error names the full path)."""
    from zoomsr.weights.registry import REGISTRY

    local = Path(os.path.expanduser(weights))
    path = Path(os.path.normpath(local if local.is_absolute() else base / local))
    if path.exists() or local.is_absolute():
        return str(path)
    if weights in REGISTRY:
        return weights
    return str(path)


def _model(doc: Any, i: int, base: Path, where: str) -> ModelEntry:
    from zoomsr.evaluation.baselines import BASELINES

    what = f"models[{i}]"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}{what}: expected a mapping with name and weights (or "
                          "baseline)")
    _check_keys(doc, ("name", "weights", "baseline", "predictions", "model", "config",
                      "n_images", "datasets", "sample_steps"), what, where)
    name = _name(doc.get("name"), f"{what}.name", where)
    weights, baseline = doc.get("weights"), doc.get("baseline")
    predictions = doc.get("predictions")
    if sum(v is not None for v in (weights, baseline, predictions)) != 1:
        raise ConfigError(f"{where}{what} ({name}): give one of weights (a checkpoint or a name "
                          f"`zoomsr weights list` shows), baseline ({', '.join(BASELINES)}) or "
                          "predictions (its outputs as files)")
    datasets = doc.get("datasets")
    if datasets is not None:
        datasets = tuple(_name(d, f"{what}.datasets", where)
                         for d in _list(datasets, f"{what}.datasets", where))
    if predictions is not None:
        for key in ("model", "config", "n_images", "sample_steps"):
            if doc.get(key) is not None:
                raise ConfigError(f"{where}{what}.{key}: predictions are files, not a model run "
                                  "here")
        path = _path(predictions, base, f"{what}.predictions", where)
        return ModelEntry(name, datasets=datasets, predictions=path)
    if baseline is not None:
        if baseline not in BASELINES:
            raise ConfigError(f"{where}{what}.baseline: {baseline!r} is not one of "
                              f"{', '.join(BASELINES)}")
        for key in ("model", "config"):
            if doc.get(key):
                raise ConfigError(f"{where}{what}.{key}: a baseline has no architecture")
    else:
        if not isinstance(weights, str | os.PathLike) or not str(weights):
            raise ConfigError(f"{where}{what}.weights: expected a path or a registry name")
        weights = _weights_path(str(weights), base)
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f"{where}{what}.model: expected an architecture name")
    config = _mapping(doc.get("config"), f"{what}.config", where)
    if config and model is None:
        raise ConfigError(f"{where}{what}.config sets the architecture model builds; add "
                          "model: NAME")
    steps = _opt_int(doc.get("sample_steps"), f"{what}.sample_steps", where, 1)
    if steps is not None and baseline is not None:
        raise ConfigError(f"{where}{what}.sample_steps: a baseline is not sampled")
    return ModelEntry(name, weights, baseline, model, config,
                      _opt_int(doc.get("n_images"), f"{what}.n_images", where, 1), datasets,
                      steps)


def _dataset(doc: Any, i: int, base: Path, where: str) -> DatasetEntry:
    from zoomsr.data.datasets import DATASETS, check_dataset_options
    from zoomsr.evaluation.scoring import check_loader_options

    what = f"datasets[{i}]"
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}{what}: expected a mapping with name, dataset and data")
    _check_keys(doc, ("name", "dataset", "data", "split", "splits", "options"), what, where)
    name = _name(doc.get("name"), f"{what}.name", where)
    kind = doc.get("dataset")
    if not isinstance(kind, str) or kind.lower() not in DATASETS:
        raise ConfigError(f"{where}{what}.dataset: {kind!r} is not one of "
                          f"{', '.join(DATASETS)}")
    kind = kind.lower()
    if doc.get("data") is None:
        raise ConfigError(f"{where}{what} ({name}): data (the dataset's folder) is required")
    data = _path(doc["data"], base, f"{what}.data", where)
    split = doc.get("split")
    if split is not None and not isinstance(split, str):
        raise ConfigError(f"{where}{what}.split: expected a split name, got {split!r}")
    splits = doc.get("splits")
    splits = _path(splits, base, f"{what}.splits", where) if splits is not None else None
    if split is not None:  # (a typo failed every cell of the dataset, after the others ran)
        names = _split_names(kind, splits is not None)
        if names and split not in names:
            raise ConfigError(f"{where}{what}.split: {split!r} is not a split of "
                              + ("a run's splits file" if splits is not None and kind != "s2naip"
                                 else kind) + f" ({', '.join(names)})")
    if splits is not None and split is None:
        raise ConfigError(f"{where}{what}.splits gives the items of each split (a zoomsr "
                          "train run's splits.json); add split: val (or train)")
    options = _mapping(doc.get("options"), f"{what}.options", where)
    check_loader_options(options, f"{where}{what}.options",
                         {"split": f"{what}.split", "n_images": "the model's n_images"})
    try:
        check_dataset_options(kind, options, f"{what}.options")
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    return DatasetEntry(name, kind, data, split, splits, options)


def _split_names(kind: str, run_splits: bool) -> tuple[str, ...]:
    """The split names a dataset entry of ``kind`` takes: S2-NAIP's (``zoomsr data build``'s,
    and its buffer), the others' own, or a training run's ``splits.json`` (``run_splits``):
    train and val."""
    from zoomsr.data.datasets import dataset_splits
    from zoomsr.evaluation.pairing import SPLIT_NAMES

    if kind == "s2naip":
        return SPLIT_NAMES
    return ("train", "val") if run_splits else dataset_splits(kind)


def spec_from_dict(doc: Any, path: Path | None = None, base: Path | None = None
                   ) -> BenchmarkSpec:
    """A :class:`BenchmarkSpec` from the parsed YAML ``doc`` (module docstring); paths
    relative to ``base`` (default: ``path``'s folder, else the working directory)."""
    from zoomsr.metrics.factory import parse_metric_names

    where = _where(path)
    # absolute: the cells record these paths, and a resume from another folder compared them
    # as typed ("bench/../sample" against "../sample") and refused every finished cell
    base = Path(os.path.abspath(base or (path.parent if path is not None else Path.cwd())))
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}expected a mapping with models and datasets")
    _check_keys(doc, ("models", "datasets", "metrics", "metric_options", "compare_to",
                      "masks", "seed", "examples"), "the benchmark", where)
    models = tuple(_model(m, i, base, where)
                   for i, m in enumerate(_list(doc.get("models"), "models", where)))
    datasets = tuple(_dataset(d, i, base, where)
                     for i, d in enumerate(_list(doc.get("datasets"), "datasets", where)))
    for what, entries in (("models", models), ("datasets", datasets)):
        names = [e.name for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{where}{what}: the name(s) {', '.join(twice)} are given twice")
    known = {d.name: d.dataset for d in datasets}
    for i, m in enumerate(models):
        unknown = [d for d in (m.datasets or ()) if d not in known]
        if unknown:
            raise ConfigError(f"{where}models[{i}].datasets: {', '.join(unknown)} is not a "
                              f"dataset of the file (its datasets: {', '.join(sorted(known))})")
    listed = doc.get("metrics", ["psnr", "ssim", "cpsnr"])
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list) or not listed:
        raise ConfigError(f"{where}metrics: expected a list of metric names")
    try:
        metric_names = tuple(parse_metric_names(",".join(map(str, listed))))
    except ConfigError as exc:
        raise ConfigError(f"{where}metrics: {exc}") from None
    options = _mapping(doc.get("metric_options"), "metric_options", where)
    _check_keys(options, METRIC_OPTION_KEYS, "metric_options", where)
    for key in _PATH_OPTIONS:
        if options.get(key) is not None:
            options[key] = _path(options[key], base, f"metric_options.{key}", where)
    compare_to = doc.get("compare_to")
    if compare_to is not None and compare_to not in {m.name for m in models}:
        raise ConfigError(f"{where}compare_to: {compare_to!r} is not a model of the file "
                          f"(its models: {', '.join(m.name for m in models)})")
    masks = doc.get("masks", True)
    if not isinstance(masks, bool):
        raise ConfigError(f"{where}masks: expected true or false, got {masks!r}")
    seed = _opt_int(doc.get("seed", 0), "seed", where, 0)
    examples = _opt_int(doc.get("examples", 4), "examples", where, 0)
    return BenchmarkSpec(models, datasets, metric_names, options, compare_to, masks, seed or 0,
                         examples=4 if examples is None else examples, path=path)


def check_cell_files(spec: BenchmarkSpec,
                     cells: Sequence[tuple[ModelEntry, DatasetEntry]]) -> None:
    """The files and folders ``cells`` (those about to be scored) read, each checked to be
    there before the first is scored: a ``ConfigError`` naming the spec's key (a missing
    dataset folder or weights file failed each of its cells, after the others had run).
    Data folders as ``--data`` gives them; registry names are looked up when loaded."""
    from zoomsr.weights.registry import REGISTRY

    where = _where(spec.path)
    models = {m.name: i for i, m in enumerate(spec.models)}
    datasets = {d.name: i for i, d in enumerate(spec.datasets)}
    for m in {m.name: m for m, _ in cells}.values():  # (entries hold dicts: unhashable)
        what = f"models[{models[m.name]}]"
        if m.weights is not None and m.weights not in REGISTRY \
                and not Path(m.weights).is_file():
            raise ConfigError(f"{where}{what}.weights: {m.weights}: no such checkpoint file, "
                              "nor a name that `zoomsr weights list` shows")
        if m.predictions is not None and not Path(m.predictions).exists():
            raise ConfigError(f"{where}{what}.predictions: {m.predictions}: not found")
    for d in {d.name: d for _, d in cells}.values():
        what = f"datasets[{datasets[d.name]}]"
        if not Path(d.data).is_dir():
            raise ConfigError(f"{where}{what}.data: {d.data}: dataset folder not found (or "
                              f"give it with --data {d.name}=FOLDER)")
        if d.splits is not None and not Path(d.splits).is_file():
            raise ConfigError(f"{where}{what}.splits: {d.splits}: splits file not found")


def with_data(spec: BenchmarkSpec, folders: Mapping[str, str | os.PathLike[str]]
              ) -> BenchmarkSpec:
    """``spec`` with the ``data`` folders of the datasets ``folders`` names (the same file on
    another machine); :class:`ConfigError` for a name the file does not have."""
    import dataclasses

    known = {d.name for d in spec.datasets}
    unknown = sorted(set(folders) - known)
    if unknown:
        raise ConfigError(f"--data {unknown[0]}=...: not a dataset of {spec.path} (its "
                          f"datasets: {', '.join(sorted(known))})")
    datasets = tuple(dataclasses.replace(d, data=Path(os.path.abspath(folders[d.name])))
                     if d.name in folders else d for d in spec.datasets)
    return dataclasses.replace(spec, datasets=datasets)


def load_spec(path: str | os.PathLike[str]) -> BenchmarkSpec:
    """Read a benchmark file (YAML; module docstring)."""
    import yaml

    from zoomsr.config_files import known_configs_hint, resolve_config

    p = resolve_config(path, under="benchmarks")
    if not p.is_file():
        raise ConfigError(f"{p}: benchmark file not found"
                          + known_configs_hint("benchmarks/"))
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{p}: not valid YAML ({first})") from None
    return spec_from_dict(doc, p)


__all__ = ["BenchmarkSpec", "DatasetEntry", "METRIC_OPTION_KEYS", "ModelEntry", "load_spec",
           "spec_from_dict", "with_data"]
