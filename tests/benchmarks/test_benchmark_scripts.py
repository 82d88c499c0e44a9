"""The benchmark scripts the GPU suite runs still run (tiny sizes, on the CPU): a broken
script found on a GPU machine costs its scarce time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TINY = "num_feat=8,num_block=1,num_grow_ch=4"


def _run(*args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_infer_throughput_reports_bare_and_pipeline(tmp_path):
    save = tmp_path / "r.json"
    text = _run(str(BENCH / "infer_throughput.py"), "--device", "cpu", "--config", TINY,
                "--size", "136", "--window", "64", "--overlap", "8", "--batch", "4", "8",
                "--pipeline-batch", "2", "--seconds", "0.2", "--ceiling", "--column-width",
                "100", "--bare-window", "64", "--scene-dir", str(tmp_path / "scenes"),
                "--save", str(save))
    assert "pipeline / bare" in text and "zero-cost model" in text
    assert "bare, windows" in text
    run = json.loads(save.read_text())["runs"][0]
    assert set(run["bare"]["by_batch"]) == {"4", "8"} and run["bare"]["window_chunks_per_s"] > 0
    assert run["pipeline_4x"]["column_width"] == 100 and run["pipeline"]["windows"] > 0
    assert run["pipeline"]["turns"] is False


def test_infer_throughput_child_with_turns(tmp_path):
    """The GPU suite's comparisons of the rows' turns for the host, of the interpreter's
    switch interval and of the writer's place: one run with all three set."""
    text = _run(str(BENCH / "infer_throughput.py"), "--_child", "--device", "cpu", "--config",
                TINY, "--size", "136", "--window", "64", "--overlap", "8", "--threads", "3",
                "--pipeline-batch", "2", "--turns", "--switch-interval", "0.002",
                "--writer", "process", "--scene-dir", str(tmp_path))
    run = json.loads(text.strip().splitlines()[-1])
    assert run["turns"] is True and run["windows"] > 0 and run["switch_interval"] == 0.002
    assert run["read_threads"] >= 1
    # the writer process forced on the CPU: its peak memory counted beside the run's own
    assert run["writer"] == "process" and 20 < run["writer_rss_mb"] < 1000
    assert run["peak_rss_total_mb"] == run["peak_rss_mb"] + run["writer_rss_mb"]


def test_writer_and_host_memory_benchmarks_run(tmp_path):
    assert "MB/s" in _run(str(BENCH / "writer_throughput.py"), "--width", "600", "--height",
                          "300", "--repeats", "1", "--no-compress")
    text = _run(str(BENCH / "writer_throughput.py"), "--width", "600", "--height", "300",
                "--repeats", "1", "--busy-threads", "1", "--switch-interval", "0.002")
    assert ("deflate level 4, this process, 1 busy thread(s), switch interval 0.002 s: median"
            in text)
    text = _run(str(BENCH / "writer_throughput.py"), "--width", "600", "--height", "300",
                "--repeats", "1", "--busy-threads", "1", "--process")
    assert "deflate level 4, own process, 1 busy thread(s)" in text
    # levels in turn, on a raster's content: the files differ in size
    content = tmp_path / "content.tif"
    y, x = np.mgrid[0:200, 0:300]
    rgb = (120 + 60 * np.sin(x / 13)[None] * np.cos(y / 17)[None]
           + np.random.default_rng(0).integers(0, 4, (3, 200, 300))).astype(np.uint8)
    with rasterio.open(content, "w", driver="GTiff", width=300, height=200, count=3,
                       dtype="uint8", crs="EPSG:3857",
                       transform=Affine(2.4, 0, 0, 0, -2.4, 0)) as dst:
        dst.write(rgb)
    text = _run(str(BENCH / "writer_throughput.py"), "--width", "700", "--height", "500",
                "--repeats", "1", "--deflate-level", "1", "12", "--content", str(content))
    sizes = [float(line.split("file ")[1].split()[0]) for line in text.splitlines()
             if "file " in line]
    assert "deflate level 1," in text and "deflate level 12," in text and "content.tif" in text
    assert len(sizes) == 2 and sizes[0] > sizes[1]
    text = _run(str(BENCH / "infer_host_memory.py"), "--sizes", "300", "556", "--repeats",
                "1", "--column-width", "300", "--scene-dir", str(tmp_path), "--window", "128",
                "--overlap", "16", "--batch", "2")
    assert "peak RSS 556 / 300 px" in text and "writer auto" in text
    assert "128/16 px windows" in text and "2 windows per call" in text
    # the decode is timed where it runs (the read pool's threads, which the row threads'
    # own CPU time missed: it read 0.03 s for a 1 GB scene), and each run's phases shown
    reading = [float(line.split("reading ")[1].split()[0]) for line in text.splitlines()
               if "reading " in line]
    assert len(reading) == 2 and all(r > 0 for r in reading)
    assert text.count("output_finish") == 2 and text.count("first_row") == 2

    def writer_mb(text: str) -> list[float]:
        return [float(line.split("writer process ")[1].split()[0])
                for line in text.splitlines() if " MB of it" in line]

    assert writer_mb(text) == [0.0, 0.0]  # the default writer: a thread, nothing to add
    text = _run(str(BENCH / "infer_host_memory.py"), "--sizes", "300", "556", "--repeats",
                "1", "--column-width", "300", "--scene-dir", str(tmp_path), "--writer",
                "process")
    # a writer process's own memory is counted (tens of MB)
    assert len(writer_mb(text)) == 2 and all(20 < mb < 1000 for mb in writer_mb(text))


def test_build_throughput_runs(tmp_path):
    """It builds a generated scene whose B08 names give no baseline: the builder's refusal of
    an unknown DN offset broke it, unseen, until the docs' commands were tried."""
    text = _run(str(BENCH / "build_throughput.py"), "--km", "1", "--keep", str(tmp_path / "b"))
    assert "tiles/s" in text


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_gpu_suite_parses():
    subprocess.run(["bash", "-n", str(BENCH / "gpu_suite.sh")], check=True)


def test_gpu_suite_runs_only_the_steps_asked_for(tmp_path):
    """GPU_SUITE_STEPS picks steps by the numbers their headers show (a short device call runs
    the ones it needs); the numbering follows the header's list."""
    out = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), str(tmp_path / "out"), "60"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={"PATH": "/usr/bin:/bin", "GPU_SUITE_STEPS": "0"}).stdout
    headers = [line for line in out.splitlines() if line.startswith("=== ")]
    assert [h.split(".")[0] for h in headers[:-1]] == [f"=== {n}" for n in range(1, 23)]
    assert all(h.endswith("not in GPU_SUITE_STEPS") for h in headers[:-1])
    assert headers[6] == "=== 7. timeline of one pipeline run (py-spy): not in GPU_SUITE_STEPS"
    assert headers[-1].startswith("=== done")


def test_spy_timeline_finds_the_start_the_gaps_and_the_tail(tmp_path):
    """A Chrome trace (py-spy's format) of a run: model calls at +1-2 s, +2.5-3.6 s (two
    threads) of a 4 s run_inference, a warm-up call before it (not counted)."""
    zoomsr = "/x/src/zoomsr/inference/pipeline.py"

    def ev(ph, name, tid, t, file=zoomsr):
        return {"ph": ph, "name": name, "tid": tid, "ts": t * 1e6,
                "args": {"filename": file, "line": 1}}

    events = [ev("B", "RRDBNet.forward", 1, 0.0), ev("E", "RRDBNet.forward", 1, 0.5),
              ev("B", "run_inference", 1, 1.0), ev("B", "wait", 1, 1.0, "threading.py"),
              ev("B", "compute_row", 2, 1.0), ev("B", "read", 2, 1.0),
              ev("E", "read", 2, 2.0), ev("B", "RRDBNet.forward", 2, 2.0),
              ev("E", "RRDBNet.forward", 2, 3.0), ev("B", "RRDBNet.forward", 3, 3.5),
              ev("B", "RRDBNet.forward", 2, 3.55), ev("E", "RRDBNet.forward", 2, 4.0),
              ev("E", "compute_row", 2, 4.0), ev("E", "RRDBNet.forward", 3, 4.6),
              ev("E", "wait", 1, 5.0), ev("E", "run_inference", 1, 5.0)]
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps(events))
    text = _run(str(BENCH / "spy_timeline.py"), str(trace), "--edge", "1.5")
    assert "run_inference: 4.000 s" in text
    # the call that started last is not the one that ends last
    assert "first model call at +1.000 s; the last one ends at +3.600 s (0.400 s before" in text
    assert "1 gaps over 50 ms" in text and "+  2.000 .. +  2.500 s (500 ms)" in text
    assert "thread 2: compute_row" in text and "+  0.000 .. +  1.000  read" in text
    assert "run_inference > wait" in text


def test_gpu_suite_python_snippets_compile():
    """The suite's inline Python (``$py -c '...'`` summaries) is checked nowhere else before
    a GPU call runs it: an apostrophe in it ends bash's quoting, and ``bash -n`` still passes."""
    import re

    text = (BENCH / "gpu_suite.sh").read_text()
    snippets = re.findall(r"\$py -c '\n(.*?)\n' ", text, flags=re.S)
    assert len(snippets) >= 2
    for code in snippets:
        assert "'" not in code, code  # it would end the quoting
        compile(code, "gpu_suite.sh", "exec")


def test_gpu_suite_by_value_gives_each_values_medians(tmp_path):
    """The suite's ``by_value`` summary (steps comparing an option's values): medians per
    value, in the order the values came, from the JSON lines among other output."""
    import re

    text = (BENCH / "gpu_suite.sh").read_text()
    code = re.search(r"by_value\(\) \{\n  \$py -c '\n(.*?)\n' ", text, flags=re.S).group(1)
    runs = tmp_path / "runs.txt"
    lines = ["warming up"]
    for rate, level, rss in [(100, 6, 900), (130, 4, 910), (90, 6, 905), (120, 4, 915),
                             (110, 6, 901), (125, 4, 912)]:
        lines.append(json.dumps({"km2_per_s": rate, "deflate_level": level,
                                 "peak_rss_total_mb": rss,
                                 "phases": {"output_finish": rate / 100}}))
    runs.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-c", code, str(runs), "deflate_level", "level"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["level 6: 3 runs, median 100.0 km2/s (runs 100.0, 90.0, 110.0), "
                   "peak RSS 901 MB, 1.00 s waiting for the output at the end",
                   "level 4: 3 runs, median 125.0 km2/s (runs 130.0, 120.0, 125.0), "
                   "peak RSS 912 MB, 1.25 s waiting for the output at the end"]


def test_infer_windows_runs():
    text = _run(str(BENCH / "infer_windows.py"), "--device", "cpu", "--size", "100",
                "--repeats", "1", "--config", TINY)
    assert "window auto (" in text and "x the speed of 128" in text


def test_infer_read_compares_one_file_at_a_time_with_the_read_pool(tmp_path):
    text = _run(str(BENCH / "infer_read.py"), "--size", "136", "--images", "3", "--window",
                "64", "--rows", "1", "--repeats", "1", "--scene-dir", str(tmp_path))
    assert "one file at a time" in text and "read pool (" in text and "speed-up" in text
    # and infer_throughput takes --read-threads (1: the row thread alone)
    text = _run(str(BENCH / "infer_throughput.py"), "--_child", "--device", "cpu", "--config",
                TINY, "--size", "136", "--window", "64", "--overlap", "8", "--read-threads",
                "1", "--scene-dir", str(tmp_path))
    assert json.loads(text.strip().splitlines()[-1])["read_threads"] == 1


def test_discovery_time_compares_inputs_without_and_with_overviews(tmp_path):
    import rasterio

    text = _run(str(BENCH / "discovery_time.py"), "--size", "600", "--images", "2",
                "--repeats", "1", "--scene-dir", str(tmp_path))
    assert "600 px, 2 dates, without overviews: median" in text
    assert "with overviews: median" in text and "without / with overviews:" in text
    with rasterio.open(next((tmp_path / "scene600x2ov").glob("*.tif"))) as ds:
        assert ds.overviews(1) == [2]  # down to about 256 px
    with rasterio.open(next((tmp_path / "scene600x2").glob("*.tif"))) as ds:
        assert ds.overviews(1) == []
