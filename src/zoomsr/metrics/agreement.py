"""How often does a metric prefer the image humans preferred?

Input: pairwise judgments, CSV (header ``target,a,b,choice[,annotator]``) or JSONL (one object with
those keys per line; a ``.json`` file may also hold one array of such objects). ``choice`` is
``A``, ``B`` or ``tie``; image paths are relative to the judgment file's folder. Judgments of the
same (target, {a, b}) are one *item* (``a``/``b`` order does not matter); its human answer is the
majority of the A/B votes (equal counts, or only ties: a human tie).

For each metric and each item with a human preference, the metric scores both candidates against
the target and prefers the better one (higher or lower, per metric). An item counts 1 when the
metric agrees, 0 when it disagrees and 1/2 when the metric ties. Reported per metric: agreement
over the items with a human preference, a 95 % interval (Wilson's below 30 items or when every
item counts alike, else a seeded bootstrap over items), the number of human ties (excluded) and
of metric ties. A NaN score is an error. Inter-annotator agreement over the items
judged at least twice: mean pairwise percent agreement and Fleiss' kappa (A/B/tie categories,
varying numbers of raters).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoomsr.errors import DataError, InputError
from zoomsr.metrics.base import Metric
from zoomsr.metrics.stats import SMALL_SAMPLE, bootstrap_ci, wilson_interval

CHOICES = ("A", "B", "tie")
_CHOICE_ALIASES = {
    "a": "A", "b": "B", "tie": "tie", "t": "tie", "=": "tie", "equal": "tie", "same": "tie",
    "none": "tie",
}
_REQUIRED = ("target", "a", "b", "choice")


@dataclass(frozen=True)
class Judgment:
    """One human vote: which of ``a``/``b`` looks more like ``target`` (or a tie)."""

    target: Path
    a: Path
    b: Path
    choice: str  # "A", "B" or "tie"
    annotator: str | None = None
    source: str = ""  # "file:line" for messages


def _parse_choice(value: Any, where: str) -> str:
    key = str(value).strip().lower()
    if key not in _CHOICE_ALIASES:
        raise DataError(f"{where}: choice {value!r} is not A, B or tie")
    return _CHOICE_ALIASES[key]


def load_judgments(path: str | os.PathLike[str]) -> list[Judgment]:
    """Read a CSV or JSONL judgment file (format in the module docstring).

    Raises:
        DataError: missing file, unknown format, missing column or bad value (with the line).
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: is a folder; expected a .csv or .jsonl judgment file")
    if not p.is_file():
        raise DataError(f"judgment file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from None
    base = p.parent
    records: list[tuple[str, dict[str, Any]]] = []  # ("file:line", record)
    if p.suffix.lower() == ".json" and text.lstrip().startswith("["):
        # a .json file is as often one array of objects as one object per line
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{p}:{exc.lineno}: not a JSON array ({exc.msg})") from None
        for n, obj in enumerate(array, 1):
            if not isinstance(obj, dict):
                raise DataError(f"{p}: element {n} of the array: expected a JSON object")
            records.append((f"{p}: element {n} of the array",
                            {str(k).strip().lower(): v for k, v in obj.items()}))
    elif p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{p}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p}:{n}: expected a JSON object")
            records.append((f"{p}:{n}", {str(k).strip().lower(): v for k, v in obj.items()}))
    elif p.suffix.lower() in (".csv", ".tsv"):
        tabs = p.suffix.lower() == ".tsv"
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if tabs else ",")
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise DataError(f"{p}: missing column(s) {', '.join(missing)} "
                            f"(need {', '.join(_REQUIRED)}[, annotator])")
        twice = sorted({h for h in header if header.count(h) > 1})
        if twice:  # "choice" and "Choice": the last one was used, silently
            raise DataError(f"{p}: column(s) {', '.join(twice)} given twice in the header")
        for n, row in enumerate(reader, 2):
            if None in row:  # DictReader's key for fields past the header's
                raise DataError(f"{p}:{n}: more fields than the header has columns")
            records.append((f"{p}:{n}",
                            {str(k).strip().lower(): v for k, v in row.items() if k}))
    else:
        raise DataError(f"{p}: unknown judgment format (use .csv or .jsonl)")
    out = []
    for where, rec in records:
        for c in _REQUIRED:
            if rec.get(c) in (None, ""):
                raise DataError(f"{where}: missing {c!r}")
            if not isinstance(rec[c], str):
                raise DataError(f"{where}: {c!r} must be a string, got {rec[c]!r}")
        ann = rec.get("annotator")

        # normalised: "../ag/img/t0.png" and "img/t0.png" are one file, so one item
        target, a, b = (Path(os.path.normpath(base / rec[c].strip()))
                        for c in ("target", "a", "b"))
        out.append(Judgment(
            target=target,
            a=a,
            b=b,
            choice=_parse_choice(rec["choice"], where),
            annotator=None if ann in (None, "") else str(ann),
            source=where,
        ))
    if not out:
        raise DataError(f"{p}: no judgments")
    return out


@dataclass
class Item:
    """All votes on one (target, {a, b}); ``a`` < ``b`` by path so order does not matter."""

    target: Path
    a: Path
    b: Path
    votes: list[str] = field(default_factory=list)  # "A", "B", "tie" relative to (a, b)

    def counts(self) -> dict[str, int]:
        """Votes per category."""
        return {c: self.votes.count(c) for c in CHOICES}

    @property
    def human(self) -> str:
        """Majority of the A/B votes; ``"tie"`` on equal counts or only tie votes."""
        c = self.counts()
        return "A" if c["A"] > c["B"] else "B" if c["B"] > c["A"] else "tie"


def group_items(judgments: Sequence[Judgment]) -> list[Item]:
    """Group votes by (target, {a, b}), flipping A/B where a judgment lists them swapped."""
    items: dict[tuple[str, str, str], Item] = {}
    voted: dict[tuple[str, str, str, str], str] = {}
    for j in judgments:
        if j.a == j.b:
            raise DataError(f"{j.source}: candidates a and b are the same file {j.a}")
        a, b, choice = j.a, j.b, j.choice
        if str(b) < str(a):
            a, b = b, a
            choice = {"A": "B", "B": "A", "tie": "tie"}[choice]
        key = (str(j.target), str(a), str(b))
        if j.annotator is not None:
            # a second vote would count as another rater (and could decide the majority)
            earlier = voted.setdefault((*key, j.annotator), j.source)
            if earlier != j.source:
                raise DataError(f"{j.source}: annotator {j.annotator!r} judged this pair "
                                f"before ({earlier}); keep one judgment per annotator")
        items.setdefault(key, Item(j.target, a, b)).votes.append(choice)
    return list(items.values())


def inter_annotator_agreement(items: Sequence[Item]) -> dict[str, Any]:
    """Percent agreement and Fleiss' kappa over items with >= 2 votes.

    Percent agreement is the mean over items of the share of agreeing rater pairs; kappa uses
    the pooled category shares (Fleiss 1971, generalised to varying numbers of raters). Which
    candidate is "A" is arbitrary (the path order), so the chance agreement pools A and B
    (each item's orientation equally likely): kappa does not change when files are renamed.
    """
    multi = [it for it in items if len(it.votes) >= 2]
    if not multi:
        return {"n_items": 0, "n_votes": 0, "percent_agreement": None, "fleiss_kappa": None}
    counts = np.array([[it.counts()[c] for c in CHOICES] for it in multi], dtype=np.float64)
    n_i = counts.sum(axis=1)
    p_i = ((counts * (counts - 1)).sum(axis=1)) / (n_i * (n_i - 1))
    p_bar = float(p_i.mean())
    p_a, p_b, p_tie = counts.sum(axis=0) / n_i.sum()
    p_e = float(2 * ((p_a + p_b) / 2) ** 2 + p_tie**2)
    kappa = (p_bar - p_e) / (1.0 - p_e) if p_e < 1.0 else None
    return {
        "n_items": len(multi),
        "n_votes": int(n_i.sum()),
        "percent_agreement": p_bar,
        "fleiss_kappa": kappa,
    }


def metric_preference(score_a: float, score_b: float, higher_is_better: bool) -> str:
    """``"A"``, ``"B"`` or ``"tie"`` (equal up to 1e-9 relative, or both infinite alike)."""
    if score_a == score_b or (
        math.isfinite(score_a) and math.isfinite(score_b)
        and math.isclose(score_a, score_b, rel_tol=1e-9, abs_tol=1e-12)
    ):
        return "tie"
    a_better = score_a > score_b if higher_is_better else score_a < score_b
    return "A" if a_better else "B"


@dataclass
class MetricAgreement:
    """Agreement of one metric with the human answers."""

    name: str
    higher_is_better: bool
    agreement: float  # share of items with a human preference where the metric agrees
    ci95_low: float
    ci95_high: float
    n_items: int  # items with a human preference
    n_agree: int
    n_disagree: int
    n_metric_ties: int  # among those items (each counts 1/2)


def agreement_from_scores(
    items: Sequence[Item],
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    name: str,
    higher_is_better: bool,
    seed: int = 0,
    n_boot: int = 2000,
) -> MetricAgreement:
    """Agreement of one metric, given its scores of each item's ``a`` and ``b`` vs the target."""
    outcomes = []
    ties = 0
    for it, sa, sb in zip(items, scores_a, scores_b, strict=True):
        if it.human == "tie":
            continue
        sa, sb = float(sa), float(sb)
        if math.isnan(sa) or math.isnan(sb):  # NaN compares False: it "lost" as A, "won" as B
            raise InputError(f"{name}: NaN score of {it.a if math.isnan(sa) else it.b} "
                             f"against {it.target}; cannot tell which candidate it prefers")
        pref = metric_preference(sa, sb, higher_is_better)
        if pref == "tie":
            ties += 1
            outcomes.append(0.5)
        else:
            outcomes.append(1.0 if pref == it.human else 0.0)
    o = np.asarray(outcomes)
    # Wilson's interval (ties count half) for few items, and for outcomes all alike (a
    # unanimous or constant metric): the bootstrap gave the zero-width [1, 1] for 5 of 5 and
    # for 40 of 40, and [0.5, 0.5] for a metric that ties on all of 40 items
    lo, hi = (wilson_interval(float(o.sum()), int(o.size))
              if o.size < SMALL_SAMPLE or np.ptp(o) == 0
              else bootstrap_ci(o, n_boot=n_boot, seed=seed))
    return MetricAgreement(
        name, higher_is_better,
        float(o.mean()) if o.size else math.nan, lo, hi, int(o.size),
        int((o == 1.0).sum()), int((o == 0.0).sum()), ties,
    )


@dataclass
class AgreementResult:
    """Agreement of every metric, the human-side counts and inter-annotator agreement."""

    metrics: list[MetricAgreement]
    n_judgments: int
    n_items: int
    n_human_ties: int
    inter_annotator: dict[str, Any]
    item_rows: list[dict[str, Any]] = field(default_factory=list)
    #: how the analysis was run (judgment file, metric options, bootstrap, seed, version),
    #: written into ``agreement.json``: the command fills it
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The document written to ``agreement.json`` (``null`` for undefined values)."""
        from zoomsr.evaluation.run import json_safe

        return json_safe({
            "n_judgments": self.n_judgments,
            "n_items": self.n_items,
            "n_human_ties": self.n_human_ties,
            "inter_annotator": self.inter_annotator,
            "metrics": {m.name: {k: v for k, v in vars(m).items() if k != "name"}
                        for m in self.metrics},
            **({"options": self.options} if self.options else {}),
        })


def analyze_agreement(
    judgments: Sequence[Judgment],
    metrics: dict[str, Metric],
    batch_size: int = 16,
    seed: int = 0,
    n_boot: int = 2000,
    progress: Any = None,
) -> AgreementResult:
    """Score every (target, candidate) once with each metric and measure agreement."""
    from zoomsr.evaluation.pairing import ImagePair
    from zoomsr.evaluation.run import score_pairs

    if not metrics:
        raise InputError("no metrics to compare")
    items = group_items(judgments)
    keys: dict[tuple[Path, Path], int] = {}
    for it in items:
        for cand in (it.a, it.b):
            keys.setdefault((it.target, cand), len(keys))
    pairs = [ImagePair(f"{t}|{c}", c, t) for (t, c) in keys]
    rows = score_pairs(pairs, metrics, batch_size=batch_size, progress=progress)
    results = []
    for name, metric in metrics.items():
        sa = [rows[keys[(it.target, it.a)]][name] for it in items]
        sb = [rows[keys[(it.target, it.b)]][name] for it in items]
        results.append(agreement_from_scores(
            items, sa, sb, name, bool(metric.higher_is_better), seed=seed, n_boot=n_boot
        ))
    item_rows = []
    for it in items:
        c = it.counts()
        row: dict[str, Any] = {
            "target": str(it.target), "a": str(it.a), "b": str(it.b),
            "votes_a": c["A"], "votes_b": c["B"], "votes_tie": c["tie"], "human": it.human,
        }
        for name, metric in metrics.items():
            s_a = rows[keys[(it.target, it.a)]][name]
            s_b = rows[keys[(it.target, it.b)]][name]
            row[f"{name}_a"], row[f"{name}_b"] = s_a, s_b
            row[f"{name}_prefers"] = metric_preference(s_a, s_b, bool(metric.higher_is_better))
        item_rows.append(row)
    return AgreementResult(
        results, len(judgments), len(items), sum(it.human == "tie" for it in items),
        inter_annotator_agreement(items), item_rows,
    )


def plot_agreement(result: AgreementResult) -> Any:
    """Bar chart of agreement per metric with 95 % intervals (a matplotlib ``Figure``)."""
    from matplotlib.figure import Figure

    names = [m.name for m in result.metrics]
    vals = np.array([m.agreement for m in result.metrics], dtype=np.float64) * 100
    lo = np.array([m.ci95_low for m in result.metrics], dtype=np.float64) * 100
    hi = np.array([m.ci95_high for m in result.metrics], dtype=np.float64) * 100
    fig = Figure(figsize=(max(4.0, 1.2 * len(names) + 1.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    err = np.nan_to_num(np.vstack([vals - lo, hi - vals]), nan=0.0).clip(min=0)
    ax.bar(x, np.nan_to_num(vals), yerr=err, capsize=4, color="#4c72b0")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 110)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("agreement with humans (%)")
    ax.set_title(f"{result.n_items - result.n_human_ties} pairs with a human preference")
    for xi, v, top in zip(x, vals, hi, strict=True):
        if np.isfinite(v):  # above the interval's cap (at v the bar's line crossed it)
            ax.text(xi, max(v, top if np.isfinite(top) else v) + 1.5,  # type: ignore[arg-type]
                    f"{v:.1f}",
                    ha="center", va="bottom", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    return fig


AGREEMENT_FILES = {
    "table": "agreement.csv", "summary": "agreement.json", "items": "agreement_items.csv",
    "plot": "agreement.png",
}


def write_agreement(
    result: AgreementResult, out_dir: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Path]:
    """Write the table (CSV), the summary (JSON), per-item scores (CSV) and the bar chart (PNG).

    Raises:
        InputError: an output exists and ``overwrite`` is false.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoomsr.io.atomic import atomic_write_all, refuse_existing
    from zoomsr.io.tables import csv_text

    out = Path(out_dir)
    paths = {k: out / v for k, v in AGREEMENT_FILES.items()}
    refuse_existing(paths.values(), overwrite)
    table = [
        {"metric": m.name, "agreement": m.agreement, "ci95_low": m.ci95_low,
         "ci95_high": m.ci95_high, "n_items": m.n_items, "n_agree": m.n_agree,
         "n_disagree": m.n_disagree, "n_metric_ties": m.n_metric_ties,
         "n_human_ties": result.n_human_ties, "higher_is_better": m.higher_is_better}
        for m in result.metrics
    ]
    fig = plot_agreement(result)
    FigureCanvasAgg(fig)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)  # drawn first: the writes below are quick
    # all or none: a Ctrl-C or a full disk between them left some files, which the re-run
    # refused
    atomic_write_all({paths["table"]: csv_text(table),
                      paths["summary"]: json.dumps(result.to_json(), indent=2) + "\n",
                      paths["items"]: csv_text(result.item_rows),
                      paths["plot"]: png.getvalue()})
    return paths


def agreement_table(result: AgreementResult) -> Any:
    """A ``rich`` table: metric, agreement %, 95 % CI, items, metric ties."""
    from rich.table import Table

    ia = result.inter_annotator
    caption = f"{result.n_judgments} judgments, {result.n_items} pairs, " \
              f"{result.n_human_ties} human ties (excluded)"
    if ia["n_items"]:
        caption += (f"; inter-annotator ({ia['n_items']} pairs): "
                    f"{100 * ia['percent_agreement']:.1f} % agreement, Fleiss' kappa "
                    + ("-" if ia["fleiss_kappa"] is None else f"{ia['fleiss_kappa']:.3f}"))
    table = Table(title="Agreement with human judgment", caption=caption)
    for col in ("metric", "agreement", "95% CI", "pairs", "metric ties"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for m in result.metrics:
        pct = "-" if not math.isfinite(m.agreement) else f"{100 * m.agreement:.1f} %"
        ci = "-" if not math.isfinite(m.ci95_low) else \
            f"[{100 * m.ci95_low:.1f}, {100 * m.ci95_high:.1f}]"
        table.add_row(m.name, pct, ci, str(m.n_items), str(m.n_metric_ties))
    return table
