"""Agreement with human judgment on a synthetic judgment file with a known answer."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from zoomsr.errors import DataError, InputError
from zoomsr.metrics import PSNR
from zoomsr.metrics.agreement import (
    Item,
    agreement_from_scores,
    analyze_agreement,
    group_items,
    inter_annotator_agreement,
    load_judgments,
    write_agreement,
)

NOISE = (0.01, 0.04, 0.1, 0.2)


class InvertedPSNR:
    """PSNR declared lower-is-better: must disagree with PSNR-following humans every time."""

    name = "inverted_psnr"
    higher_is_better = False

    def __call__(self, pred, target):
        return PSNR()(pred, target)


class Constant:
    """Scores every image the same: every preference is a metric tie."""

    name = "constant"
    higher_is_better = True

    def __call__(self, pred, target):
        return torch.zeros(pred.shape[0], dtype=torch.float64)


def _psnr_np(a: np.ndarray, b: np.ndarray) -> float:
    d = (a[4:-4, 4:-4].astype(np.float64) - b[4:-4, 4:-4]) / 255
    return -10 * math.log10(np.mean(d**2))


@pytest.fixture
def judgment_dir(tmp_path):
    """3 targets x 4 noisy candidates; "humans" prefer the higher PSNR; some pairs judged by
    several annotators (with dissent and ties), some listed as (b, a); one human tie."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(3):
        target = (rng.random((32, 32, 3)) * 155 + 50).astype(np.uint8)
        Image.fromarray(target).save(tmp_path / f"t{t}.png")
        cands = []
        for k, sigma in enumerate(NOISE):
            noisy = np.clip(target + rng.normal(0, 255 * sigma, target.shape), 0, 255)
            Image.fromarray(noisy.round().astype(np.uint8)).save(tmp_path / f"t{t}_c{k}.png")
            cands.append(noisy.round().astype(np.uint8))
        for i in range(4):
            for j in range(i + 1, 4):
                better = "A" if _psnr_np(cands[i], target) > _psnr_np(cands[j], target) else "B"
                a, b = f"t{t}_c{i}.png", f"t{t}_c{j}.png"
                if (t + i + j) % 3 == 0:  # listed swapped
                    a, b, better = b, a, {"A": "B", "B": "A"}[better]
                rows.append({"target": f"t{t}.png", "a": a, "b": b, "choice": better,
                             "annotator": "ann1"})
                if t == 0:  # two more annotators; ann3 dissents on (c0, c1)
                    rows.append({**rows[-1], "annotator": "ann2"})
                    dissent = {"A": "B", "B": "A"}[better] if (i, j) == (0, 1) else better
                    rows.append({**rows[-1], "choice": dissent, "annotator": "ann3"})
    # (t1, c0 vs c3) gets an extra tie vote: the majority stays; (t2, c0 vs c2) gets an
    # opposite vote: 1 A vs 1 B is a human tie
    rows.append({"target": "t1.png", "a": "t1_c0.png", "b": "t1_c3.png", "choice": "tie",
                 "annotator": "ann9"})
    first = next(r for r in rows if r["target"] == "t2.png" and {r["a"], r["b"]} == {
        "t2_c0.png", "t2_c2.png"})
    rows.append({**first, "choice": {"A": "B", "B": "A"}[first["choice"]], "annotator": "ann9"})
    with open(tmp_path / "judgments.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["target", "a", "b", "choice", "annotator"])
        w.writeheader()
        w.writerows(rows)
    with open(tmp_path / "judgments.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return tmp_path


def test_psnr_following_humans_give_100_and_0_percent(judgment_dir):
    judgments = load_judgments(judgment_dir / "judgments.csv")
    metrics = {"psnr": PSNR(), "inverted_psnr": InvertedPSNR(), "constant": Constant()}
    result = analyze_agreement(judgments, metrics, batch_size=5, n_boot=500)
    by = {m.name: m for m in result.metrics}
    assert result.n_items == 18
    assert result.n_judgments == len(judgments) == 18 + 2 * 6 + 2
    assert result.n_human_ties == 1
    assert by["psnr"].agreement == 1.0 and by["psnr"].n_items == 17
    # 17 of 17: Wilson's interval (the bootstrap of few items gave the zero-width [1, 1])
    assert by["psnr"].ci95_low == pytest.approx(0.8157, abs=1e-4) and by["psnr"].ci95_high == 1.0
    assert by["inverted_psnr"].agreement == 0.0 and by["inverted_psnr"].n_disagree == 17
    assert by["constant"].agreement == 0.5 and by["constant"].n_metric_ties == 17


def test_human_ties_are_excluded_and_counted():
    items = [Item("t", "a", "b", ["A"]), Item("t", "a", "c", ["tie"]),
             Item("t", "b", "c", ["A", "B"]), Item("t", "c", "d", ["B", "B", "tie"])]
    assert [it.human for it in items] == ["A", "tie", "tie", "B"]
    m = agreement_from_scores(items, [2.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], "x", True,
                              n_boot=200)
    assert m.n_items == 2 and m.agreement == 1.0
    m = agreement_from_scores(items, [2.0, 1.0, 1.0, 5.0], [1.0, 0.0, 0.0, 1.0], "x", True,
                              n_boot=200)
    assert m.agreement == 0.5 and m.n_agree == 1 and m.n_disagree == 1
    assert (m.ci95_low, m.ci95_high) == pytest.approx((0.0945, 0.9055), abs=1e-4)  # Wilson


def test_csv_and_jsonl_agree_and_paths_are_relative_to_the_file(judgment_dir):
    a = load_judgments(judgment_dir / "judgments.csv")
    b = load_judgments(judgment_dir / "judgments.jsonl")
    assert b == [dataclasses.replace(j, source=b[k].source) for k, j in enumerate(a)]
    assert a[0].source.endswith("judgments.csv:2") and b[0].source.endswith("judgments.jsonl:1")
    assert a[0].target == judgment_dir / "t0.png"


def test_swapped_candidates_merge_into_one_item(tmp_path):
    p = tmp_path / "j.csv"
    p.write_text("target,a,b,choice\nt.png,x.png,y.png,A\nt.png,y.png,x.png,b\nt.png,y.png,x.png,A\n")
    items = group_items(load_judgments(p))
    assert len(items) == 1
    assert items[0].a.name == "x.png" and sorted(items[0].votes) == ["A", "A", "B"]


def test_inter_annotator_agreement_hand_computed():
    items = [Item("t", "a", "b", ["A", "A"]), Item("t", "a", "c", ["A", "B"]),
             Item("t", "b", "c", ["B", "B", "B"]), Item("t", "c", "d", ["A"])]
    ia = inter_annotator_agreement(items)
    # P_i = 1, 0, 1 -> 2/3; shares A 3/7, B 4/7, tie 0, A and B pooled (which is "A" is the
    # path order) -> 1/2 each -> P_e = 1/2; kappa = (2/3 - 1/2) / (1/2)
    assert ia["n_items"] == 3 and ia["n_votes"] == 7
    assert ia["percent_agreement"] == pytest.approx(2 / 3)
    assert ia["fleiss_kappa"] == pytest.approx(1 / 3)
    assert inter_annotator_agreement(items[3:])["fleiss_kappa"] is None


def test_kappa_does_not_depend_on_which_candidate_is_a():
    """Renaming files swaps A and B of some items (path order): the kappa stays (it followed
    the names: -0.200 vs 0.455 on one file of judgments)."""
    flip = {"A": "B", "B": "A", "tie": "tie"}
    votes = [["A", "A", "tie"], ["A", "B", "A"], ["B", "B"], ["tie", "tie", "A"], ["A", "A"]]
    items = [Item("t", f"a{k}", f"b{k}", v) for k, v in enumerate(votes)]
    swapped = [Item("t", f"a{k}", f"b{k}", [flip[x] for x in v] if k % 2 else v)
               for k, v in enumerate(votes)]
    kappa = inter_annotator_agreement(items)["fleiss_kappa"]
    assert inter_annotator_agreement(swapped)["fleiss_kappa"] == pytest.approx(kappa)
    assert -1 < kappa < 1


def test_inter_annotator_on_the_synthetic_file(judgment_dir):
    result = analyze_agreement(load_judgments(judgment_dir / "judgments.jsonl"),
                               {"psnr": PSNR()}, n_boot=100)
    ia = result.inter_annotator
    # t0's 6 pairs: 3 votes each, (c0, c1) split 2:1; (t1, c0, c3): A/B + tie; (t2, c0, c2): A + B
    assert ia["n_items"] == 8
    assert ia["percent_agreement"] == pytest.approx((5 * 1 + 1 / 3 + 0 + 0) / 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("target,a,b\nt,x,y\n", "missing column"),
        ("target,a,b,choice\nt.png,x.png,y.png,maybe\n", "j.csv:2: choice 'maybe'"),
        ("target,a,b,choice\nt.png,,y.png,A\n", "j.csv:2: missing 'a'"),
        ("target,a,b,choice\nt.png,x.png,x.png,A\n", "same file"),
        ("target,a,b,choice\n", "no judgments"),
        # these were miscounted without a word
        ("target,a,b,choice\nt.png,x.png,y.png,A,extra\n", "j.csv:2: more fields than the "
                                                            "header"),
        ("target,a,b,choice,Choice\nt.png,x.png,y.png,A,B\n", r"j.csv: column\(s\) choice "
                                                              "given twice"),
        ("target,a,b,choice,annotator\nt.png,x.png,y.png,A,u1\nt.png,y.png,x.png,B,u1\n",
         r"j.csv:3: annotator 'u1' judged this pair before \(.*j.csv:2\)"),
    ],
)
def test_bad_judgment_files(tmp_path, text, message):
    p = tmp_path / "j.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=message):
        group_items(load_judgments(p))


def test_bad_jsonl_and_format(tmp_path):
    p = tmp_path / "j.jsonl"
    p.write_text('{"target": "t", "a": "x", "b": "y", "choice": "A"}\nnot json\n')
    with pytest.raises(DataError, match="j.jsonl:2"):
        load_judgments(p)
    q = tmp_path / "j.txt"
    q.write_text("x")
    with pytest.raises(DataError, match="csv or .jsonl"):
        load_judgments(q)
    with pytest.raises(DataError, match="not found"):
        load_judgments(tmp_path / "none.csv")


def test_missing_image_names_the_file(judgment_dir):
    (judgment_dir / "t2_c3.png").unlink()
    with pytest.raises(DataError, match="t2_c3.png"):
        analyze_agreement(load_judgments(judgment_dir / "judgments.csv"), {"psnr": PSNR()})


def test_outputs_written_and_not_overwritten(judgment_dir, tmp_path):
    result = analyze_agreement(load_judgments(judgment_dir / "judgments.csv"),
                               {"psnr": PSNR(), "inverted_psnr": InvertedPSNR()}, n_boot=100)
    out = tmp_path / "out"
    paths = write_agreement(result, out)
    with Image.open(paths["plot"]) as img:
        assert img.format == "PNG" and img.size[0] > 100
    rows = list(csv.DictReader(paths["table"].read_text().splitlines()))
    assert [(r["metric"], float(r["agreement"])) for r in rows] == [
        ("psnr", 1.0), ("inverted_psnr", 0.0)]
    doc = json.loads(paths["summary"].read_text())
    assert doc["metrics"]["psnr"]["agreement"] == 1.0 and doc["n_items"] == 18
    assert doc["n_human_ties"] == 1 and doc["inter_annotator"]["n_items"] == 8
    items = list(csv.DictReader(paths["items"].read_text().splitlines()))
    assert len(items) == 18 and {r["psnr_prefers"] for r in items} <= {"A", "B"}
    assert sum(r["human"] == "tie" for r in items) == 1
    with pytest.raises(InputError, match="--overwrite"):
        write_agreement(result, out)
    write_agreement(result, out, overwrite=True)


def test_judgment_files_as_spreadsheets_write_them(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark (it read as a missing 'target'
    column); a .TSV is tab-separated too; one file under two spellings is one item."""
    rows = "target,a,b,choice\nimg/t.png,x.png,y.png,A\n../d/img/t.png,x.png,y.png,B\n"
    (tmp_path / "d").mkdir()
    bom = tmp_path / "d" / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + rows.encode())
    items = group_items(load_judgments(bom))
    assert len(items) == 1 and sorted(items[0].votes) == ["A", "B"]  # a human tie
    tsv = tmp_path / "d" / "up.TSV"
    tsv.write_text(rows.replace(",", "\t"))
    assert len(load_judgments(tsv)) == 2


def test_a_jsonl_path_that_is_no_string_is_named_with_its_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"target": ["x"], "a": "a.png", "b": "b.png", "choice": "A"}\n')
    with pytest.raises(DataError, match=r"j.jsonl:1: 'target' must be a string, got \['x'\]"):
        load_judgments(path)



def test_small_sample_intervals_cover_as_they_claim():
    """The percentile bootstrap covered a nominal 95 % about 85 % of the time at n = 5 (and was
    [min, max] at n = 2): below 30 values the mean's interval is Student's t."""
    from zoomsr.evaluation.run import summarize
    from zoomsr.metrics.stats import t975, wilson_interval

    assert t975(4) == 2.776 and abs(t975(60) - 2.000) < 2e-3  # table, then Cornish-Fisher
    rng = np.random.default_rng(0)
    for n in (2, 5, 12):
        covered = 0
        for _ in range(400):
            s = summarize(rng.normal(30.0, 2.0, n))
            covered += s["ci95_low"] <= 30.0 <= s["ci95_high"]
        assert covered / 400 > 0.92, (n, covered)
    assert wilson_interval(5, 5)[1] == 1.0 and wilson_interval(5, 5)[0] == pytest.approx(0.5655,
                                                                                        abs=1e-4)


def test_unanimous_or_constant_metric_on_many_items_has_a_real_interval():
    """From 30 items the bootstrap was used, and gave the zero-width [1, 1] for 40 of 40
    agreements and [0.5, 0.5] for a metric that ties on all 40: Wilson's interval then."""
    items = [Item("t", f"a{i}", f"b{i}", ["A"]) for i in range(40)]
    agree = agreement_from_scores(items, [2.0] * 40, [1.0] * 40, "m", True)
    assert agree.agreement == 1.0 and agree.ci95_high == 1.0
    assert agree.ci95_low == pytest.approx(0.9124, abs=1e-4)
    flat = agreement_from_scores(items, [1.0] * 40, [1.0] * 40, "flat", True)
    assert flat.n_metric_ties == 40 and flat.ci95_low < 0.4 < 0.6 < flat.ci95_high
    never = agreement_from_scores(items[:5], [1.0] * 5, [2.0] * 5, "m", True)
    assert never.ci95_low == 0.0  # exactly: it was 2.8e-17 (rounding)
    mixed = agreement_from_scores(items, [2.0] * 30 + [1.0] * 10, [1.0] * 30 + [2.0] * 10,
                                  "m", True)  # mixed outcomes: still the bootstrap
    assert mixed.ci95_low < 0.75 < mixed.ci95_high


def test_a_nan_score_is_an_error_naming_the_candidate():
    """NaN compares False both ways: as A it lost every item, as B it won every item."""
    items = [Item("t.png", "a.png", "b.png", ["A"])]
    for sa, sb, bad in ((math.nan, 1.0, "a.png"), (1.0, math.nan, "b.png")):
        with pytest.raises(InputError, match=rf"m: NaN score of {bad} against t.png"):
            agreement_from_scores(items, [sa], [sb], "m", True)


def test_json_array_files_and_folders(tmp_path):
    rows = [{"target": "t.png", "a": "x.png", "b": "y.png", "choice": "A"},
            {"target": "t.png", "a": "x.png", "b": "z.png", "choice": "tie"}]
    (tmp_path / "j.json").write_text(json.dumps(rows, indent=2))
    got = load_judgments(tmp_path / "j.json")
    assert [j.choice for j in got] == ["A", "tie"] and got[0].a == tmp_path / "x.png"
    assert got[1].source.endswith("j.json: element 2 of the array")
    (tmp_path / "bad.json").write_text(json.dumps([rows[0], ["t.png"]]))
    with pytest.raises(DataError, match="bad.json: element 2 of the array: expected a JSON"):
        load_judgments(tmp_path / "bad.json")
    with pytest.raises(DataError, match="is a folder; expected a .csv or .jsonl judgment file"):
        load_judgments(tmp_path)
