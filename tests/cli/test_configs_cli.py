"""`zoomsr configs` and the shipped configs found by name: what a wheel's users have (the
repository's configs/ folder was not installed, so the README's commands failed there)."""

from __future__ import annotations

from pathlib import Path

import yaml

from zoomsr.config_files import CONFIG_DIR, builtin_config, builtin_configs, resolve_config


def test_every_shipped_config_is_listed_and_named_the_ways_the_docs_use():
    names = builtin_configs()
    assert {"tiny", "esrgan_8img", "default_multi", "benchmarks/sample"} <= set(names)
    assert len(names) == len(list(CONFIG_DIR.rglob("*.yaml")))
    tiny = CONFIG_DIR / "tiny.yaml"
    for given in ("tiny", "tiny.yaml", "configs/tiny.yaml"):
        assert builtin_config(given) == tiny
    assert builtin_config("configs/benchmarks/sample.yaml") == CONFIG_DIR / "benchmarks" / \
        "sample.yaml"
    for other in ("nosuch", "/etc/tiny.yaml", "../configs/tiny", "tiny.txt", "", "configs"):
        assert builtin_config(other) is None


def test_a_file_in_the_working_folder_wins_over_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("configs/tiny.yaml") == CONFIG_DIR / "tiny.yaml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.yaml").write_text("model: {name: srcnn}\n")
    assert resolve_config("configs/tiny.yaml").resolve() == tmp_path / "configs" / "tiny.yaml"
    assert resolve_config("sample", under="benchmarks") == CONFIG_DIR / "benchmarks" / \
        "sample.yaml"
    assert resolve_config("nosuch.yaml").name == "nosuch.yaml"  # (the caller says not found)
    (tmp_path / "tiny").mkdir()  # an earlier run's --out tiny does not hide the shipped one
    (tmp_path / "sample").mkdir()
    assert resolve_config("tiny") == CONFIG_DIR / "tiny.yaml"
    assert resolve_config("sample", under="benchmarks") == CONFIG_DIR / "benchmarks" / \
        "sample.yaml"
    (tmp_path / "mine").mkdir()
    assert resolve_config("mine") == Path("mine")  # no shipped one: the folder, for its error


def test_list_and_show(cli):
    code, out, _ = cli("configs", "list")
    assert code == 0
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["tiny"].startswith("Smoke run on CPU")
    assert set(lines) == set(builtin_configs())
    code, out, _ = cli("configs", "show", "tiny")
    assert code == 0 and out == (CONFIG_DIR / "tiny.yaml").read_text()
    assert yaml.safe_load(out)["model"]
    code, out, _ = cli("configs", "show", "sample")  # as `zoomsr benchmark sample` takes it
    assert code == 0 and out == (CONFIG_DIR / "benchmarks" / "sample.yaml").read_text()
    code, _, err = cli("configs", "show", "nosuch")
    assert code == 2 and "no shipped config named 'nosuch'; known: benchmarks/sample" in err


def test_train_and_benchmark_take_a_shipped_config_by_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as for a wheel's user
    code, _, err = cli("train", "configs/nosuch.yaml", "--out", tmp_path / "run")
    assert code == 2 and "configs/nosuch.yaml: config file not found (zoomsr's own: " in err
    assert "`zoomsr configs list`" in err
    # found, then refused for its data (a folder that is not there)
    code, _, err = cli("train", "tiny", "--set", f"data.root={tmp_path / 'none'}",
                       "--out", tmp_path / "run")
    assert code == 2 and "config file not found" not in err and str(tmp_path / "none") in err
    code, _, err = cli("benchmark", "nosuch", "--out", tmp_path / "b")
    assert code == 2 and "benchmark file not found (zoomsr's own: benchmarks/sample" in err
    code, _, err = cli("benchmark", "sample", "--data", f"sample={tmp_path / 'none'}",
                       "--out", tmp_path / "b")
    assert code == 2 and str(tmp_path / "none") in err and "benchmark file" not in err


def test_every_shipped_config_is_in_the_package_data():
    from pathlib import Path

    import pytest

    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["zoomsr"]
    package = CONFIG_DIR.parent
    packaged = {p for g in globs for p in package.glob(g)}
    assert set(CONFIG_DIR.rglob("*.yaml")) <= packaged
