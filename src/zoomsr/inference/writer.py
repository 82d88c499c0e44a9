"""Crash-safe, resumable output: a partial-run folder, then one atomic GeoTIFF/COG.

While a scene runs, finished output rows go to a raw file in a hidden folder beside the
output (``.NAME.zoomsr-partial/``), and after each row of windows the blending accumulators of
the rows still open are saved, with the number of finished window rows, in one atomically
replaced ``state.npz``. ``--resume`` reloads it and goes on from the next window row; rows are
recomputed at most once more (if the process died between the raw write and the state save),
with the same inputs, so they write the same bytes. When every row is done, the GeoTIFF is
written from the raw file in one deterministic pass to a temporary name and renamed onto the
output: an interrupted run never leaves a file under the output's name (the writing itself:
:mod:`zoomsr.io.geotiff`, :mod:`zoomsr.io.geotiff_stream`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoomsr.errors import DataError, InputError, WriteError, first_line
from zoomsr.io.atomic import atomic_path
from zoomsr.io.raw_raster import RawRaster
from zoomsr.records import first_difference, shortened

STATE_FILE = "state.npz"


def partial_dir(output: Path) -> Path:
    """The hidden folder holding an unfinished run of ``output``."""
    return output.with_name(f".{output.name}.zoomsr-partial")


def has_saved_state(output: Path) -> bool:
    """Whether an unfinished run of ``output`` saved rows to resume from (its partial folder
    without a state holds nothing: a run stopped before its first row, or a crash while the
    folder was removed)."""
    return (partial_dir(output) / STATE_FILE).is_file()


#: What each entry of a run's fingerprint (``run_record.run_fingerprint``) is, to the user.
_SETTINGS = {
    "zoomsr": "zoomsr version", "frames": "inputs", "grid": "target grid (--native-grid, "
    "or the inputs' extent)", "tiling": "--window/--overlap/--margin",
    "model": "model", "device": "--device",
    "autocast": "--precision", "batch_size": "--batch-size (windows per model call)",
    "uncertainty": "--uncertainty", "seed": "--seed", "save_lr": "--save-lr",
    "column_width": "--column-width", "layout": "window layout",
}

#: A diffusion model's sampling settings (``sampling`` in its record) -> the options that set
#: them.
SAMPLING_OPTIONS = {"steps": "--sample-steps", "seed": "--seed"}

#: The settings the window layout follows from: with these equal, a layout that differs was
#: placed by another version of zoomsr.
_LAYOUT_FROM = ("tiling", "grid", "column_width")


#: Fingerprint entries a run's record leaves out: the weights' path and file name (the
#: weights are known by their SHA-256, so the same file given as "w.pth" or "/abs/w.pth", or
#: moved, continues the run). Left out of records saved by an earlier zoomsr, which had them,
#: too, so such a run still continues.
_DROPPED = {"model": ("weights", "model")}


def _record(fingerprint: str) -> dict[str, Any] | None:
    """A run's fingerprint (JSON) as a dict; None where it is not one (unreadable, or saved
    by something else)."""
    try:
        fp = json.loads(fingerprint)
    except (TypeError, ValueError):
        return None
    return fp if isinstance(fp, dict) else None


def _without_dropped(fingerprint: str) -> str:
    """``fingerprint`` (JSON) without the :data:`_DROPPED` entries."""
    fp = _record(fingerprint)
    if fp is None:
        return fingerprint
    for key, gone in _DROPPED.items():
        if isinstance(fp.get(key), dict) and any(g in fp[key] for g in gone):
            fp[key] = {k: v for k, v in fp[key].items() if k not in gone}
            fingerprint = json.dumps(fp, sort_keys=True, default=str)
    return fingerprint


def _comparable(fingerprint: str) -> str:
    """``fingerprint`` (JSON) without what cannot change the output: ``column_width`` (the
    strips it makes are in ``layout``) and, without ``--uncertainty``, ``seed`` (nothing is
    drawn; a diffusion model's seed is in its own record). A requeued job given another
    --seed or --column-width was refused or not depending on when it had been stopped (a
    finished output takes them)."""
    fp = _record(fingerprint)
    if fp is None:
        return fingerprint
    fp.pop("column_width", None)
    if not fp.get("uncertainty"):
        fp.pop("seed", None)
    return json.dumps(fp, sort_keys=True, default=str)


def _differences(before: str, now: str, width: int = 60) -> str:
    """Which settings of two run fingerprints (JSON) differ, in the user's terms: for each
    setting, the first differing entry with its old and new value (shortened); an input file
    by name when it changed since."""
    a, b = _record(before), _record(now)
    if a is None or b is None:
        return "its record is unreadable"

    parts = []
    for key in sorted(a.keys() | b.keys()):
        if key == "batch_size" and a.get("tiling") != b.get("tiling"):
            continue  # follows from an automatic window: the window says it
        if (key == "column_width" and a.get("layout") == b.get("layout")) or (
                key == "seed" and not (a.get("uncertainty") or b.get("uncertainty"))):
            continue  # changes nothing here (_comparable)
        if key == "files" and isinstance(a.get(key), list) and isinstance(b.get(key), list):
            old = {str(f[0]): f for f in a[key] if isinstance(f, list) and f}
            new = {str(f[0]): f for f in b[key] if isinstance(f, list) and f}
            changed = [p for p in new if p in old and old[p] != new[p]]
            if changed:
                parts.append(f"{changed[0]} changed since"
                             + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""))
            if set(old) != set(new):
                gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
                more = len(gone) + len(added) - len(gone[:2]) - len(added[:2])
                parts.append("inputs: " + "; ".join(
                    [f"{p} no longer given" for p in gone[:2]]
                    + [f"{p} added" for p in added[:2]])
                    + (f" (and {more} more)" if more else ""))
            continue
        if key == "frames" and isinstance(a.get(key), list) and isinstance(b.get(key), list) \
                and len(a[key]) != len(b[key]):  # whole lists, shortened, would say nothing
            parts.append(f"{_SETTINGS[key]}: was {len(a[key])} date(s), now {len(b[key])}")
            continue
        if key == "frames" and isinstance(a.get(key), list) and isinstance(b.get(key), list):
            option = _frame_option(a[key], b[key])
            if option is not None:  # else a difference no option makes: said below
                parts.append(option)
                continue
        if key == "layout" and a.get(key) != b.get(key):
            if _placed_otherwise(a, b):  # else the tiling, grid or column width says it
                parts.append(f"{_SETTINGS[key]}: " + (
                    "not recorded by the older zoomsr that saved it" if key not in a else
                    "another version of zoomsr placed the windows or column strips otherwise"))
            continue
        if key == "tiling" and a.get(key) != b.get(key):
            def px(t: Any) -> str:
                return "/".join(map(str, t)) + " px" if isinstance(t, list) else shortened(t, width)

            parts.append(f"{_SETTINGS[key]}: was {px(a.get(key))}, now {px(b.get(key))}")
            continue
        found = first_difference(a.get(key), b.get(key), key)
        if found:
            path, x, y = found
            label = _SETTINGS.get(key, key)
            detail = path[len(key):].lstrip(".")
            setting = detail.removeprefix("sampling.")
            if key == "model" and setting != detail and setting in SAMPLING_OPTIONS:
                label, detail = SAMPLING_OPTIONS[setting], ""  # named as on the command line
            if key == "autocast":  # the option's own values, not the flag it sets
                parts.append(f"{label}: was {'bf16' if x else 'fp32'}, now "
                             f"{'bf16' if y else 'fp32'}")
                continue
            parts.append(f"{label}{f' ({detail})' if detail else ''}: was {shortened(x, width)}, "
                         f"now {shortened(y, width)}")
    # once each (--seed is in the model's sampling record and the run's own)
    return "; ".join(dict.fromkeys(parts)) or "its record differs"


#: What each frame records (``Frame.describe``) that an option sets, and that option.
_FRAME_OPTIONS = {"radiometry": "--radiometry", "dn_offset": "--dn-offset",
                  "bands": "--rgb-bands"}


def _frame_option(before: list[Any], now: list[Any]) -> str | None:
    """The first of :data:`_FRAME_OPTIONS` that reads a frame (or its extra bands) of two
    fingerprints' ``frames`` otherwise, as ``--dn-offset: was 1000, now 0 (FILE)``: named by
    the option, not by the record's fields (``inputs ([0].dn_offset)``); None if none does."""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(map(str, value))
        return f"{value:g}" if isinstance(value, float) else str(value)

    for x, y in zip(before, now, strict=False):
        if not (isinstance(x, dict) and isinstance(y, dict)) or x.get("paths") != y.get("paths"):
            continue  # (other files: the inputs' difference says it)
        extras = [(u, (y.get("extras") or {}).get(name))
                  for name, u in (x.get("extras") or {}).items()]
        for field, option in _FRAME_OPTIONS.items():
            for u, v in [(x, y), *extras]:
                if isinstance(u, dict) and isinstance(v, dict) and field in u \
                        and u.get(field) != v.get(field):
                    where = u.get("paths") or [u.get("path")]
                    name = Path(str(where[0])).name if where and where[0] else "?"
                    return (f"{option}: was {shown(u.get(field))}, now {shown(v.get(field))} "
                            f"({name})")
    return None


def _placed_otherwise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two run fingerprints of the same tiling, grid and column width place the
    windows otherwise (a run saved by another zoomsr): no inputs or options continue it."""
    return a.get("layout") != b.get("layout") and all(a.get(k) == b.get(k)
                                                      for k in _LAYOUT_FROM)


def _layout_differs(before: str, now: str) -> bool:
    """:func:`_placed_otherwise` of two fingerprints as saved (JSON)."""
    a, b = _record(before), _record(now)
    return a is not None and b is not None and _placed_otherwise(a, b)


class PartialRun:
    """The partial-run folder of one output: raw rasters + ``state.npz``."""

    def __init__(self, output: Path, fingerprint: dict[str, Any]) -> None:
        self.output = output
        self.dir = partial_dir(output)
        self.fingerprint = _without_dropped(json.dumps(fingerprint, sort_keys=True,
                                                       default=str))

    def raw(self, name: str, width: int, height: int, bands: int) -> RawRaster:
        return RawRaster(self.dir / f"{name}.raw", width, height, bands)

    def start(self, rasters: list[RawRaster], resume: bool,
              overwrite: bool = False) -> dict[str, Any] | None:
        """Prepare the folder; return the saved state when resuming a matching run.

        An interrupted run's progress is never dropped silently: without ``resume`` it is
        refused unless ``overwrite``.
        """
        state_path = self.dir / STATE_FILE
        if resume and state_path.is_file():
            state = self.load()
            state["fingerprint"] = _without_dropped(state["fingerprint"])
            if _comparable(state["fingerprint"]) != _comparable(self.fingerprint):
                why = _differences(state["fingerprint"], self.fingerprint)
                if _layout_differs(state["fingerprint"], self.fingerprint):
                    raise InputError(
                        f"{self.output}: the interrupted run (in {self.dir.name}) was saved by "
                        f"another version of zoomsr ({why}); it cannot be continued: pass "
                        "--overwrite instead of --resume to start again")
                raise InputError(
                    f"{self.output}: the interrupted run (in {self.dir.name}) used other "
                    f"inputs or settings ({why}"
                    "); to continue it, give the inputs and options it had with --resume; or "
                    "pass --overwrite instead of --resume to start again"
                )
            if all(r.path.is_file() for r in rasters):
                for r in rasters:
                    r.check_size()
                return state
        elif state_path.is_file() and not overwrite:
            raise InputError(
                f"{self.output}: an interrupted run left its progress (in {self.dir.name}); "
                "pass --resume to continue it, or --overwrite to start again"
            )
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        try:
            for r in rasters:
                r.create()
        except BaseException:  # nothing to resume in it: not left behind
            self.remove()
            raise
        return None

    def load(self) -> dict[str, Any]:
        path = self.dir / STATE_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
        # an empty or cut file: EOFError (which the CLI took for a Ctrl-C), BadZipFile...
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: unreadable resume state ({first_line(exc) or 'empty'}); "
                            "pass --overwrite instead of --resume to start again") from None
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            raise DataError(f"{path}: unreadable resume state (no record of the run); pass "
                            "--overwrite instead of --resume to start again")
        return {**meta, "arrays": arrays}

    def save(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        payload = {"meta": np.array(json.dumps({**meta, "fingerprint": self.fingerprint}))}
        payload.update(arrays)
        path = self.dir / STATE_FILE
        try:
            with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
                np.savez(f, **payload)  # type: ignore[arg-type]  # (numpy's stub: allow_pickle)
        except OSError as exc:  # a full disk: named (it was a bare "OSError: [Errno 28] ...")
            raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from None

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def removed_unless_saved(self) -> Iterator[None]:
        """Remove the folder if what runs inside stops (an error, Ctrl-C) before a state was
        ever saved in it: nothing there to resume, and a hidden folder the size of the
        output (sparse) would be left behind."""
        try:
            yield
        except BaseException:
            if not (self.dir / STATE_FILE).is_file():
                self.remove()
            raise
