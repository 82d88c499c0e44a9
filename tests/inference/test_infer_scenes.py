"""Many scenes in one job (``zoomsr infer --scenes``): manifest, local and Ray runs, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from infer_helpers import read, write_frames

from zoomsr.errors import DataError
from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.scenes import Scene, load_scenes, run_scenes
from zoomsr_needs import require_package

OPTS = {"tiling": Tiling(32, 8), "progress": False}
CLI_TINY = ["--model", "rrdbnet", "--config", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
            "--random-weights", "--window", "32", "--overlap", "8", "--no-progress",
            "--device", "cpu"]


def _scenes(root: Path) -> Path:
    """Three small scenes (different sizes and content) and a manifest with relative paths."""
    write_frames(root / "a", n=3, size=(40, 48), seed=1)
    write_frames(root / "b", n=3, size=(24, 56), seed=2, holes={0: (slice(0, 6), slice(0, 9))})
    c = write_frames(root / "c", n=3, size=(32, 32), seed=3)
    manifest = {"scenes": [
        {"inputs": ["a"], "output": "out/a.tif"},
        {"inputs": "b", "output": "out/b.tif"},
        {"inputs": [p.relative_to(root).as_posix() for p in c], "output": "out/c.tif"},
    ]}
    (root / "out").mkdir()
    path = root / "scenes.json"
    path.write_text(json.dumps(manifest))
    return path


def test_manifest_paths_are_normalised(tmp_path):
    """Reports and errors print the paths: ``..`` and ``.`` against the manifest's folder are
    folded, and two spellings of one output are the same output."""
    (tmp_path / "jobs").mkdir()
    manifest = tmp_path / "jobs" / "scenes.json"
    manifest.write_text(json.dumps({"scenes": [
        {"inputs": ["../a/./x.tif"], "output": "../out/./a.tif"}]}))
    (scene,) = load_scenes(manifest)
    assert scene.inputs == (tmp_path / "a" / "x.tif",) and scene.output == tmp_path / "out/a.tif"
    manifest.write_text(json.dumps({"scenes": [
        {"inputs": "a", "output": "../out/a.tif"},
        {"inputs": "b", "output": "x/../../out/a.tif"}]}))
    with pytest.raises(DataError, match=r"scenes\[1\]: output .* is also the output of "
                                        r"scenes\[0\]"):
        load_scenes(manifest)


def _alone(root: Path, model, opts: InferenceOptions) -> dict[str, Path]:
    outs = {}
    for name in "abc":
        outs[name] = root / f"alone_{name}.tif"
        run_inference(root / name, outs[name], model, opts)
    return outs


def test_scenes_local_equal_scenes_alone(tmp_path, tiny_model):
    manifest = _scenes(tmp_path)
    model = tiny_model(2)
    opts = InferenceOptions(**OPTS)
    scenes = load_scenes(manifest)
    assert [s.output for s in scenes] == [tmp_path / "out" / f"{n}.tif" for n in "abc"]
    seen = []
    report = run_scenes(scenes, model, opts, on_scene=lambda o: seen.append(o.status))
    assert seen == ["done"] * 3 and not report.failed
    for name, alone in _alone(tmp_path, model, opts).items():
        assert (tmp_path / "out" / f"{name}.tif").read_bytes() == alone.read_bytes()
    # --resume skips finished scenes; without it an existing output fails that scene
    again = run_scenes(scenes, model, InferenceOptions(**OPTS, resume=True))
    assert [o.status for o in again.outcomes] == ["skipped"] * 3
    # finished without the LR mosaic asked for now: --resume cannot add it (not skipped)
    again = run_scenes(scenes[:1], model, InferenceOptions(**OPTS, resume=True, save_lr=True))
    assert again.failed[0].exit_code == 2 and "without --save-lr (a.lr.tif is missing)" in (
        again.failed[0].error)
    again = run_scenes(scenes[:1], model, opts)
    assert again.failed[0].exit_code == 2 and "--overwrite" in again.failed[0].error
    # a scene now of other inputs (a manifest edited between requeues) is not "skipped"
    swapped = [dataclasses.replace(scenes[0], inputs=scenes[1].inputs)]
    again = run_scenes(swapped, model, InferenceOptions(**OPTS, resume=True))
    assert again.failed[0].exit_code == 2
    assert "finished by an earlier run of other inputs" in again.failed[0].error


def test_failing_scene_keeps_the_others(tmp_path, tiny_model, cli):
    manifest = _scenes(tmp_path)
    data = json.loads(manifest.read_text())
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x_TCI.tif").write_bytes(b"II*\0garbage")
    data["scenes"].insert(1, {"inputs": ["empty"], "output": "out/empty.tif"})
    data["scenes"].append({"inputs": ["bad"], "output": "out/bad.tif"})
    manifest.write_text(json.dumps(data))
    code, stdout, err = cli("infer", "--scenes", manifest, *CLI_TINY)
    assert code == 2
    assert "3 scene(s) done, 0 skipped, 2 failed" in stdout
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("failed: scenes[1] (empty.tif): ") and "no raster found" in lines[0]
    assert lines[1].startswith("failed: scenes[4] (bad.tif): ") and "not a readable" in lines[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "b.tif", "c.tif"]
    # after fixing the input, --resume runs only what is missing
    (tmp_path / "bad" / "x_TCI.tif").unlink()
    write_frames(tmp_path / "empty", n=2, size=(24, 24))
    write_frames(tmp_path / "bad", n=2, size=(24, 24), seed=5)
    code, stdout, err = cli("infer", "--scenes", manifest, *CLI_TINY, "--resume")
    assert code == 0, err
    assert "2 scene(s) done, 3 skipped, 0 failed" in stdout


def test_a_runtime_failure_makes_a_scenes_job_exit_1_beside_input_failures(tmp_path, cli,
                                                                         monkeypatch):
    """The docs say 2, or 1 if a failure was a runtime error: the exit code was the largest
    of the failures', so one bad input hid a worker's death (a requeue retries on 1)."""
    from zoomsr.inference import scenes as scenes_module
    from zoomsr.inference.distributed import RayWorkerError

    manifest = _scenes(tmp_path)
    data = json.loads(manifest.read_text())
    data["scenes"].append({"inputs": ["missing"], "output": "out/missing.tif"})
    manifest.write_text(json.dumps(data))
    real = scenes_module.run_inference

    def dies_on_b(inputs, output, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if Path(output).name == "b.tif":
            raise RayWorkerError("a Ray model worker died: killed")
        return real(inputs, output, *args, **kwargs)

    monkeypatch.setattr(scenes_module, "run_inference", dies_on_b)
    code, stdout, err = cli("infer", "--scenes", manifest, *CLI_TINY)
    assert "2 scene(s) done, 0 skipped, 2 failed" in stdout
    assert code == 1, err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('[{"inputs": ["a"], "output": "a.tif"}]', '{"scenes"'),
        ('{"scenes": []}', "lists no scene"),
        ('{"scenes": ["a"]}', "scenes[0]: expected an object"),
        ('{"scenes": [{"inputs": ["a"]}]}', "scenes[0]: missing 'output'"),
        ('{"scenes": [{"inputs": [], "output": "a.tif"}]}', "scenes[0]: 'inputs' must be"),
        ('{"scenes": [{"inputs": [3], "output": "a.tif"}]}', "scenes[0]: 'inputs' must hold"),
        ('{"scenes": [{"inputs": "a", "output": "a.png"}]}', "scenes[0]: output 'a.png' must"),
        ('{"scenes": [{"inputs": "a", "output": "a.tif", "seed": 1}]}', "unknown key(s) 'seed'"),
        ('{"scenes": [{"inputs": "a", "output": "a.tif"}, {"inputs": "b", "output": "./a.tif"}]}',
         "scenes[1]: output './a.tif' is also the output of scenes[0]"),
    ],
)
def test_manifest_errors(tmp_path, cli, content, message):
    path = tmp_path / "scenes.json"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load_scenes(path)
    assert message in str(info.value) and str(path) in str(info.value)
    code, _, err = cli("infer", "--scenes", path, *CLI_TINY)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and str(path) in lines[0]


def test_scenes_option_conflicts(tmp_path, cli):
    manifest = _scenes(tmp_path)
    for args, message in [
        ((tmp_path / "a", "--scenes", manifest), "not both"),
        (("--scenes", manifest, "-o", tmp_path / "x.tif"), "not both"),
        ((), "no input given"),
        ((tmp_path / "a",), "--output is required"),
        (("--scenes", tmp_path / "missing.json"), "cannot read the scenes manifest"),
    ]:
        code, _, err = cli("infer", *args, *CLI_TINY)
        assert code == 2 and message in err, (args, err)


@pytest.mark.slow
def test_scenes_on_ray_match_local(tmp_path, tiny_model):
    require_package("ray")
    import ray

    from zoomsr.inference.distributed import RayPool

    manifest = _scenes(tmp_path)
    model = tiny_model(2)
    opts = InferenceOptions(**OPTS, uncertainty=2)
    scenes = load_scenes(manifest)
    (tmp_path / "empty").mkdir()
    scenes.insert(1, Scene(9, (tmp_path / "empty",), tmp_path / "out" / "empty.tif"))
    local = _alone(tmp_path, model, opts)
    with RayPool("local", workers=2) as pool:
        report = run_scenes(scenes, model, opts, row_source=pool.rows)
        assert pool.scenes == 3 and pool.actor_starts == 1  # one set of workers for all scenes
    assert not ray.is_initialized()
    assert [o.status for o in report.outcomes] == ["done", "failed", "done", "done"]
    assert "no raster found" in report.failed[0].error
    for o in report.done:
        assert o.result.windows_computed == o.result.windows
        a, ma, meta_a = read(local[o.scene.output.stem])
        b, mb, meta_b = read(o.scene.output)
        assert (ma == mb).all() and meta_a["transform"] == meta_b["transform"]
        assert abs(a.astype(int) - b.astype(int)).max() <= 1
        assert (a == b).mean() > 0.999


def test_ctrl_c_in_a_scenes_run_says_what_was_kept(tmp_path, cli, monkeypatch):
    """Nothing kept before the first scene's first row; after the first scene, its output is
    there and --resume continues with the others."""
    import zoomsr.inference.scenes as scenes_mod

    manifest = _scenes(tmp_path)
    real = scenes_mod.run_scenes

    def at_once(*args, **kwargs):
        raise KeyboardInterrupt

    def after_the_first_scene(*args, on_scene=None, **kwargs):
        def stop(outcome):
            on_scene(outcome)
            raise KeyboardInterrupt

        return real(*args, on_scene=stop, **kwargs)

    monkeypatch.setattr(scenes_mod, "run_scenes", at_once)
    code, _, err = cli("infer", "--scenes", manifest, *CLI_TINY)
    assert code == 130
    assert err.strip() == "interrupted before the first row was finished: nothing was kept"
    monkeypatch.setattr(scenes_mod, "run_scenes", after_the_first_scene)
    code, _, err = cli("infer", "--scenes", manifest, *CLI_TINY)
    assert code == 130
    assert err.strip() == ("interrupted: 1 of 3 scene output(s) are there and the rows finished "
                           "of 0 other(s) are kept; run the same command with --resume to "
                           "continue")
    monkeypatch.setattr(scenes_mod, "run_scenes", real)
    code, stdout, err = cli("infer", "--scenes", manifest, *CLI_TINY, "--resume")
    assert code == 0, err
    assert "2 scene(s) done, 1 skipped, 0 failed" in stdout


def test_an_output_over_another_scenes_input_is_refused(tmp_path, tiny_model):
    """With --overwrite, scene 0 wrote over a frame of scene 1 (each scene checked only its
    own inputs); named as an input, or an existing raster in an input folder."""
    frames = write_frames(tmp_path / "one", n=2, size=(24, 24))
    write_frames(tmp_path / "four", n=2, size=(24, 24), seed=4)
    before = frames[0].read_bytes()
    for output, second in ((frames[0], "one"), (frames[0], frames[0].name), (frames[1], "one")):
        manifest = tmp_path / "m.json"
        inputs = [f"one/{second}"] if second != "one" else ["one"]
        manifest.write_text(json.dumps({"scenes": [
            {"inputs": "four", "output": str(output.relative_to(tmp_path))},
            {"inputs": inputs, "output": "k.tif"}]}))
        with pytest.raises(DataError, match=rf"scenes\[0\]: output {output} is (a file in )?an "
                                            rf"input of scenes\[1\]"):
            load_scenes(manifest)
    assert frames[0].read_bytes() == before
    # an earlier zoomsr output in an input folder is no input (discovery leaves it out)
    run_inference(tmp_path / "four", tmp_path / "one" / "sr.tif", tiny_model(2),
                  InferenceOptions(**OPTS))
    manifest.write_text(json.dumps({"scenes": [
        {"inputs": "four", "output": "one/sr.tif"}, {"inputs": "one", "output": "k.tif"}]}))
    assert len(load_scenes(manifest)) == 2


def test_s2naip_scenes_run_locally_beside_ray_scenes(tmp_path, tiny_dataset, tiny_model):
    """`--scenes ... --ray` with an S2-NAIP chunk scene: it failed ("runs locally (no --ray)")
    after Ray had started; it now runs here while the other scenes use the row source."""
    write_frames(tmp_path / "a", n=2, size=(24, 24))
    calls = []

    def rows(plan, model, todo):  # what a Ray worker does with each row, here
        from zoomsr.inference.assemble import prepare_row
        from zoomsr.inference.rows import blend_device, compute_row

        calls.append(len(todo))
        for r in todo:
            yield prepare_row(compute_row(plan, model, r, blend_device(model)), plan.windows,
                              model.scale, with_lr=True)

    scenes = [Scene(0, (tiny_dataset,), tmp_path / "chunks.tif"),
              Scene(1, (tmp_path / "a",), tmp_path / "a.tif")]
    report = run_scenes(scenes, tiny_model(2), InferenceOptions(**OPTS), row_source=rows)
    assert [o.status for o in report.outcomes] == ["done", "done"], report.outcomes
    assert len(calls) == 1  # the GeoTIFF scene only


def test_a_scene_writing_another_scenes_side_output_is_refused_first(tmp_path, tiny_model):
    """Scene 1's output a.lr.tif replaced scene 0's LR mosaic (--save-lr): "2 done"."""
    a = write_frames(tmp_path / "a", n=2, size=(24, 24), seed=1)
    b = write_frames(tmp_path / "b", n=2, size=(24, 24), seed=2)
    scenes = [Scene(0, tuple(a), tmp_path / "o" / "a.tif"),
              Scene(1, tuple(b), tmp_path / "o" / "a.lr.tif")]
    with pytest.raises(DataError, match=r"scenes\[1\] and scenes\[0\] both write .*a.lr.tif "
                                        r"\(the output of one, the LR mosaic \(--save-lr\) of "
                                        r"the other\)"):
        run_scenes(scenes, tiny_model(2), InferenceOptions(save_lr=True))
    assert not (tmp_path / "o").exists()  # before any scene ran
    report = run_scenes(scenes, tiny_model(2), InferenceOptions())  # no LR mosaics: fine
    assert len(report.done) == 2


def test_the_cli_refuses_clashing_side_outputs_before_ray(tmp_path, cli, monkeypatch):
    """It was refused only once Ray had started, without the manifest's name before it."""
    from zoomsr.inference import distributed

    def no_ray(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("Ray started before the manifest's outputs were checked")

    monkeypatch.setattr(distributed.RayPool, "start", no_ray)
    write_frames(tmp_path / "a", n=2, size=(24, 24))
    manifest = tmp_path / "s.json"
    manifest.write_text(json.dumps({"scenes": [{"inputs": ["a"], "output": "o/a.tif"},
                                               {"inputs": ["a"], "output": "o/a.lr.tif"}]}))
    code, _, err = cli("infer", "--scenes", manifest, *CLI_TINY, "--save-lr", "--ray", "local")
    assert code == 2 and err.strip().startswith(
        f"error: {manifest}: scenes[1] and scenes[0] both write "), err
