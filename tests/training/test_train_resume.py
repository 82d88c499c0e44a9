"""A run killed mid-way resumes from its last checkpoint at the right step and finishes."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from zoomsr.errors import CheckpointError, ConfigError
from zoomsr.training.datamodule import split_pairs
from zoomsr.training.run import train


def train_pairs(cfg):
    return split_pairs(cfg.data.root, cfg.data)[0]


class _Crash(Callback):
    """Raise after training step ``at`` completes (before that step's checkpoint hook)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


class _RecordStart(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.step = trainer.global_step
        self.generator = {k: v.clone() for k, v in pl_module.generator.state_dict().items()}


def test_resume_continues_from_the_last_checkpoint(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny", "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=2",
                      "trainer.val_every_n_steps=3", "trainer.log_every_n_steps=1",
                      "data.max_val_pairs=2")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, out, resume="auto", callbacks=[_Crash(at=3)])
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # step 3 was lost with the crash, nothing before it

    start = _RecordStart()
    result = train(cfg, out, resume="auto", callbacks=[start])
    assert result.resumed_from == out / "checkpoints" / "last.ckpt"
    assert start.step == 2 and result.global_step == 6
    # The generator restarted from the saved weights, not from a fresh initialisation.
    for name, tensor in start.generator.items():
        assert torch.equal(tensor, saved["state_dict"][f"generator.{name}"])
    # Logged steps run on without a gap or a repeat: 0-1 before the crash, 2-5 after it.
    assert [s for s, _ in series(out, "train/g_total")] == list(range(6))
    assert [s for s, _ in series(out, "val/l1")] == [2, 5]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6

    # Running it again: nothing left to do, still at step 6; nothing is written (it added an
    # empty log version and an events file and rewrote generator.pth)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = train(cfg, out, resume="auto")
    assert again.global_step == 6 and again.already_done
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # the generator missing (removed): the run exports it again
    (out / "generator.pth").unlink()
    redo = train(cfg, out, resume="auto")
    assert not redo.already_done and (out / "generator.pth").is_file()


def test_resume_refuses_another_model_and_missing_checkpoints(tiny_config, tmp_path):
    cfg = tiny_config("tiny", "trainer.max_steps=1", "trainer.val_every_n_steps=1",
                      "trainer.checkpoint_every_n_steps=1", "data.max_val_pairs=2")
    out = tmp_path / "run"
    train(cfg, out, resume="never")
    wider = tiny_config("tiny", "model.config.num_feat=16")
    with pytest.raises(ConfigError, match="use another --out, or --resume never --overwrite"):
        train(wider, out, resume="auto")
    with pytest.raises(CheckpointError, match="nowhere.ckpt"):
        train(cfg, out, resume=tmp_path / "nowhere.ckpt")
    # a model file (the run's generator.pth): a bare KeyError from Lightning, after the new
    # run folder was made; another run's checkpoint of another model: "use another --out"
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(ConfigError, match=rf"^{out / 'generator.pth'}: a model file, not a "
                                          r"training checkpoint .* set model.init_weights"):
        train(cfg, fresh, resume=out / "generator.pth")
    assert list(fresh.iterdir()) == []
    with pytest.raises(ConfigError, match=r"resume from a checkpoint of this model's run, or "
                                          r"leave out --resume PATH"):
        train(wider, fresh, resume=out / "checkpoints" / "last.ckpt")
    # what the checkpoint restores cannot change: a new optim.lr was silently ignored (the
    # optimiser's saved learning rate ran) while config.yaml claimed it; another task or no
    # EMA crashed loading the state after config.yaml was rewritten
    saved = (out / "config.yaml").read_bytes()
    for sets, first in ((["optim.lr=1e-5"], "optim.lr: was 0.002, now 1e-05"),
                        (["optim.ema_decay=null"], "optim.ema_decay: was 0.9, now None"),
                        (["task=regression", "losses.gan.weight=0"], "task")):
        changed = tiny_config("tiny", "trainer.max_steps=2", *sets)
        with pytest.raises(ConfigError, match=rf"the run it resumes trained with other settings "
                                              rf"that the checkpoint restores \(.*{first}"):
            train(changed, out, resume="auto")
        assert (out / "config.yaml").read_bytes() == saved
    # a loss weight is read each step: it may change on resume
    train(tiny_config("tiny", "trainer.max_steps=2", "losses.pixel.weight=0.5"), out,
          resume="auto")


def test_a_fresh_run_never_mixes_with_an_earlier_runs_checkpoints(tiny_config, tmp_path):
    cfg = tiny_config("tiny", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
                      "trainer.checkpoint_every_n_steps=1", "data.max_val_pairs=2")
    out = tmp_path / "run"
    train(cfg, out, resume="never")
    first = sorted(p.name for p in (out / "checkpoints").iterdir())
    events = sorted((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "last.ckpt" in first and events
    # its checkpoints would have mixed with the old ones
    with pytest.raises(ConfigError, match=r"holds checkpoints of an earlier run \(last.ckpt.*"
                                          "--resume auto continues it"):
        train(cfg, out, resume="never")
    other = tmp_path / "other"
    train(cfg, other, resume="never")
    with pytest.raises(ConfigError, match="--resume never --overwrite starts afresh there"):
        train(cfg, out, resume=other / "checkpoints" / "last.ckpt")
    # --overwrite never removes what this run resumes from, nor what "auto" would continue
    # (the same command re-run after a crash must not lose its progress)
    with pytest.raises(ConfigError, match="the checkpoint this run resumes from: drop "
                                          "--overwrite to continue from it"):
        train(cfg, out, resume=out / "checkpoints" / "last.ckpt", overwrite=True)
    with pytest.raises(ConfigError, match="pass --resume never with --overwrite"):
        train(cfg, out, resume="auto", overwrite=True)
    # anything that fails before training starts leaves the earlier run as it was
    gpu = tiny_config("tiny", "trainer.max_steps=2", "trainer.accelerator=gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^trainer settings \(accelerator=gpu, .*\): "
                                              r".*(?i:gpu)"):
            train(gpu, out, resume="never", overwrite=True)
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == first
    # afresh: the earlier run's outputs go, files zoomsr did not write stay
    (out / "samples" / "my_notes.txt").write_text("keep me")
    result = train(cfg, out, resume="never", overwrite=True)
    assert result.resumed_from is None and result.global_step == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == first
    assert not any(e.exists() for e in events)
    assert (out / "samples" / "my_notes.txt").read_text() == "keep me"
    assert (out / "config.yaml").is_file() and (out / "generator.pth").is_file()
    # its own checkpoints: continued as before
    assert train(cfg, out, resume=out / "checkpoints" / "last.ckpt").global_step == 2


def test_overwrite_fails_in_one_line_when_a_file_cannot_be_removed(tmp_path):
    from zoomsr.training.run import remove_run_outputs

    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step=0000002.ckpt").write_bytes(b"x")
    stuck = ckpts / "last.ckpt"
    stuck.mkdir()  # cannot be unlinked, even by root
    with pytest.raises(ConfigError, match=r"last.ckpt: cannot remove .* for --overwrite"):
        remove_run_outputs(tmp_path / "run", [ckpts / "step=0000002.ckpt", stuck])
    stuck.rmdir()
    (ckpts / "old.ckpt").write_bytes(b"x")  # not in the list: still there, so refused
    (ckpts / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"old.ckpt: still there after --overwrite"):
        remove_run_outputs(tmp_path / "run", [ckpts / "last.ckpt"])


def test_ctrl_c_is_an_interrupt_and_the_last_checkpoint_stays(tiny_config, tmp_path):
    """Lightning turns Ctrl-C into sys.exit(1) and then ignores SIGINT: zoomsr raises
    KeyboardInterrupt instead (the CLI: "interrupted", exit 130) and restores the handler."""
    import signal

    class CtrlC(Callback):
        def on_train_batch_end(self, trainer, *args):  # noqa: ANN001, ANN002
            if trainer.global_step == 3:
                raise KeyboardInterrupt

    cfg = tiny_config("tiny", "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=2")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", resume="auto", callbacks=[CtrlC()])
    assert signal.getsignal(signal.SIGINT) is before
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    result = train(cfg, tmp_path / "run", resume="auto")  # the same command goes on
    assert result.resumed_from is not None and result.global_step == 6


def _ckpt_names(out):
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def test_a_run_ending_between_checkpoints_leaves_one_last_ckpt(tiny_config, tmp_path):
    """Lightning's own end-of-run save met _SaveFinal's last.ckpt and wrote last-v1.ckpt."""
    out = tmp_path / "run"
    for steps, names in ((1, ["last.ckpt"]), (2, ["last.ckpt", "step=0000002.ckpt"]),
                         (2, ["last.ckpt", "step=0000002.ckpt"])):  # the last: nothing to do
        cfg = tiny_config("tiny", f"trainer.max_steps={steps}",
                          "trainer.checkpoint_every_n_steps=2", "data.max_val_pairs=2")
        assert train(cfg, out, resume="auto").global_step == steps
        assert _ckpt_names(out) == names
        last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
        assert last["global_step"] == steps


def test_resume_refuses_max_steps_below_the_checkpoints_step(tiny_config, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config("tiny", "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=2",
                      "data.max_val_pairs=2")
    train(cfg, out, resume="auto")
    config_before = (out / "config.yaml").read_text()
    files_before = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()}
    shorter = tiny_config("tiny", "trainer.max_steps=1", "trainer.checkpoint_every_n_steps=2",
                          "data.max_val_pairs=2")
    with pytest.raises(ConfigError, match=r"last.ckpt is at step 2, past trainer.max_steps=1: "
                                          r".*set trainer.max_steps to 2 or more"):
        train(shorter, out, resume="auto")
    assert (out / "config.yaml").read_text() == config_before  # nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").iterdir()} == files_before


def test_train_logs_carry_no_lightning_tips_nor_flops(tiny_config, tmp_path):
    import logging

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    keep, lightning = Keep(), logging.getLogger("lightning.pytorch")
    level = lightning.level
    lightning.addHandler(keep)
    lightning.setLevel(logging.INFO)
    try:
        train(tiny_config("tiny", "trainer.max_steps=1", "data.max_val_pairs=2"), tmp_path / "r")
    finally:
        lightning.removeHandler(keep)
        lightning.setLevel(level)
    text = "\n".join(keep.messages)
    assert "Trainable params" in text and "generator" in text  # the model summary is there
    assert "FLOPs" not in text and "Flops" not in text
    assert "Tip:" not in text and "litlogger" not in text


def test_resume_from_a_run_folder_takes_its_last_checkpoint(tmp_path):
    """--resume RUN_FOLDER (or its checkpoints/): its last.ckpt; a folder without one is named
    as such (it said "not found" of a folder that exists)."""
    from zoomsr.training.run import resolve_resume

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=f"{run} is a folder without checkpoints/last.ckpt: "
                                              "pass a .ckpt file"):
        resolve_resume(tmp_path / "new", run)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    last = run / "checkpoints" / "last.ckpt"
    assert resolve_resume(tmp_path / "new", run) == last
    assert resolve_resume(tmp_path / "new", run / "checkpoints") == last


def test_a_ctrl_c_is_not_announced_twice():
    """Lightning logs "Detected KeyboardInterrupt, attempting graceful shutdown ..." (through
    the loggers training filters) before zoomsr's own line on what the run kept."""
    import logging

    from zoomsr.training.run import _NoTips

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0,
                                 msg, None, None)

    keep = _NoTips()
    assert not keep.filter(record("\nDetected KeyboardInterrupt, attempting graceful shutdown"))
    assert not keep.filter(record("💡 Tip: try installing litlogger"))
    assert keep.filter(record("GPU available: False"))


def _tensors(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("name,every,crash,workers", [
    ("tiny", 3, 4, 0),  # ESRGAN with EMA, checkpoint mid-epoch (2 batches an epoch)
    ("tiny", 2, 3, 0),  # checkpoint at an epoch's end
    ("tiny_sr3", 3, 4, 0),  # diffusion: noise and timesteps drawn at every step
    pytest.param("tiny", 3, 4, 1, marks=pytest.mark.slow),  # a worker fetches ahead
])
def test_a_resumed_run_ends_byte_identical_to_an_uninterrupted_one(
        tiny_config, tmp_path, name, every, crash, workers):
    """Same data order, same frames per sample, same random numbers per step, and the EMA of
    the checkpoint's own step: the exported generator and the checkpoint are identical."""
    cfg = tiny_config(name, "trainer.max_steps=7", f"trainer.checkpoint_every_n_steps={every}",
                      "trainer.val_every_n_steps=5", "data.max_val_pairs=2",
                      f"data.num_workers={workers}")
    whole = train(cfg, tmp_path / "whole", resume="auto")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, tmp_path / "split", resume="auto", callbacks=[_Crash(at=crash)])
    resumed = train(cfg, tmp_path / "split", resume="auto")
    assert resumed.resumed_from is not None and resumed.global_step == whole.global_step == 7
    for path in ("generator.pth", "checkpoints/last.ckpt"):
        a, b = _tensors(tmp_path / "whole" / path), _tensors(tmp_path / "split" / path)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), path


@pytest.mark.parametrize("name,first", [("tiny_regression", 5), ("tiny", 4)])
def test_a_run_extended_by_max_steps_ends_as_one_run_to_the_new_max(tiny_config, tmp_path,
                                                                     name, first):
    """last.ckpt was saved at train end, after Lightning had counted the stopped epoch as
    finished: the extended run skipped that epoch's other batches (5 then 7 steps != 7)."""
    common = ("trainer.checkpoint_every_n_steps=100", "trainer.val_every_n_steps=100",
              "data.max_val_pairs=2")
    whole = train(tiny_config(name, "trainer.max_steps=7", *common), tmp_path / "whole")
    train(tiny_config(name, f"trainer.max_steps={first}", *common), tmp_path / "grown")
    grown = train(tiny_config(name, "trainer.max_steps=7", *common), tmp_path / "grown")
    assert grown.resumed_from is not None and grown.global_step == whole.global_step == 7
    for path in ("generator.pth", "checkpoints/last.ckpt"):
        a, b = _tensors(tmp_path / "whole" / path), _tensors(tmp_path / "grown" / path)
        assert all(torch.equal(a[k], b[k]) for k in a), path


def test_a_checkpoint_without_the_data_modules_place_goes_on_in_its_epoch(tiny_config,
                                                                          tmp_path):
    """Written before the data module saved its place: the resumed epoch began with epoch
    0's draws when DataLoader workers fetched before Lightning set the epoch."""
    cfg = tiny_config("tiny_regression", "trainer.max_steps=3",
                      "trainer.checkpoint_every_n_steps=100", "trainer.val_every_n_steps=100",
                      "data.max_val_pairs=2")
    train(cfg, tmp_path / "old")
    ckpt = torch.load(tmp_path / "old" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt.pop("S2NAIPDataModule") == {"epoch": 1, "draws": 4}  # 2 batches an epoch
    torch.save(ckpt, tmp_path / "old" / "checkpoints" / "last.ckpt")

    seen = []

    class _Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(list(batch["tile"]))

    for workers in (0, 1):
        seen.clear()
        more = tiny_config("tiny_regression", "trainer.max_steps=4", f"data.num_workers={workers}",
                           "trainer.checkpoint_every_n_steps=100",
                           "trainer.val_every_n_steps=100", "data.max_val_pairs=2")
        out = tmp_path / f"w{workers}"
        import shutil

        shutil.copytree(tmp_path / "old", out)
        train(more, out, callbacks=[_Record()])
        assert len(seen) == 1
        if workers == 0:
            first = seen[0]
        else:
            assert seen[0] == first  # the same draws, whatever the workers
    from zoomsr.data import ResumableSampler

    sampler = ResumableSampler(len(train_pairs(cfg)), cfg.seed)
    sampler.set_epoch(1)
    draws = list(sampler)[4:8]
    assert first == [train_pairs(cfg)[i].tile for i, _ in draws]
