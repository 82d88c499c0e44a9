"""Whether a file is a checkpoint of a registry entry, checked before its SHA-256 is trusted.

:func:`content_problem` sniffs the bytes as the checkpoint loader does (an HTML error page, a
Git LFS pointer, an empty or truncated file); :func:`architecture_problem` compares the
parameter names and shapes with the entry's model built on the meta device.
:func:`check_content` and :func:`check_architecture` refuse a cached file
(:class:`~zoomsr.errors.CheckpointError`) saying how to replace it.
"""

from __future__ import annotations

from pathlib import Path

from zoomsr.errors import CheckpointError
from zoomsr.weights.registry import WeightsEntry


def content_problem(path: Path, suffix: str | None = None) -> str | None:
    """Why ``path`` cannot be a checkpoint, judged from its bytes (e.g. "an HTML/XML page,
    e.g. a download error page"), or None when it is laid out as one. ``suffix`` (default:
    the path's) picks safetensors or ``torch.save``; a download's temporary file needs it."""
    # The checkpoint loader's own sniffing, so the cache and the loader tell the same story.
    from zoomsr.io.sniff import torch_file_kind, unreadable_safetensors, what_file

    if (suffix or path.suffix).lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:  # parses the header and checks that the file covers every tensor it lists
            with safe_open(str(path), framework="numpy"):
                return None
        except (SafetensorError, OSError) as exc:
            return unreadable_safetensors(path, exc)
    elif torch_file_kind(path) is not None:
        return None
    return what_file(path)[0]


def replace_steps(entry: WeightsEntry, path: Path, recorded: bool = False) -> str:
    """What to do, online and offline, with a refused cached file of ``entry``; ``recorded``:
    its SHA-256 was recorded at first use, so a file saved by hand must have it recorded anew."""
    steps = f"delete it and run `zoomsr weights download {entry.name}`"
    if entry.url is None:
        return steps
    if not recorded:
        return f"{steps} (offline: fetch {entry.url} and save it as {path})"
    return (f"{steps} (offline: fetch {entry.url}, save it as {path}, then run "
            f"`zoomsr weights forget {entry.name}` so its SHA-256 is recorded anew)")


def check_content(entry: WeightsEntry, path: Path) -> None:
    """Refuse a cached file of ``entry`` that is not a checkpoint, saying how to replace it."""
    problem = content_problem(path)
    if problem is None:
        return
    raise CheckpointError(f"{path} is not a readable checkpoint ({problem}); "
                          f"{replace_steps(entry, path)}")


def architecture(entry: WeightsEntry) -> str:
    """``entry``'s model and full config, e.g. ``rrdbnet num_in_ch=12 ... num_grow_ch=32``."""
    import torch

    from zoomsr.models import create_model

    with torch.device("meta"):
        model = create_model(entry.model, **entry.config)
    config = getattr(model, "config", entry.config)
    return " ".join([entry.model, *(f"{k}={v}" for k, v in config.items())])


def architecture_problem(entry: WeightsEntry, path: Path, suffix: str | None = None) -> str | None:
    """How the checkpoint ``path`` differs from ``entry``'s architecture: its first missing,
    unexpected or differently shaped tensor (e.g. ``conv_first.weight is [8, 24, 3, 3] in the
    file, [64, 12, 3, 3] in the model``), or why its tensors cannot be read; None when the
    parameter names and shapes are those of ``entry.model`` built with ``entry.config``.

    The model is built on the meta device (nothing allocated) and compared as
    :func:`~zoomsr.models.load_checkpoint` would load it (same prefix handling). ``suffix``
    (default: the path's) picks the format, as in :func:`content_problem`."""
    import torch

    from zoomsr.models import create_model, first_mismatch, match_state_dict, read_checkpoint

    try:
        checkpoint = read_checkpoint(path, suffix=suffix)
    except CheckpointError as exc:
        text = str(exc)
        return text[len(str(path)):].lstrip(" :") if text.startswith(str(path)) else text
    with torch.device("meta"):
        model = create_model(entry.model, **entry.config)
    try:
        result, _ = match_state_dict(model, checkpoint.state_dict, source=checkpoint.source)
    except CheckpointError as exc:  # e.g. the model under several prefixes
        return str(exc)
    mismatch = first_mismatch(result)
    if mismatch is not None:
        return mismatch
    # recorded as trusted next: a file whose weights cannot make an image is refused here,
    # with the cache's steps (at use it was "a training run that diverged? use an earlier
    # checkpoint", no advice for a cached download)
    broken = next((k for k, v in checkpoint.state_dict.items()
                   if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    return None if broken is None else f"{broken} holds NaN or infinite values"


def check_architecture(entry: WeightsEntry, path: Path) -> None:
    """Refuse a cached file of ``entry`` whose tensors are not those of its architecture."""
    problem = architecture_problem(entry, path)
    if problem is None:
        return
    raise CheckpointError(
        f"{path} is not a checkpoint of {entry.name} ({architecture(entry)}): {problem}; "
        f"nothing recorded; {replace_steps(entry, path)}"
    )
