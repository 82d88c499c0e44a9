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
    # each validation at the step of its sample image and checkpoint (it was logged one
    # step earlier: at 2 and 5)
    assert [s for s, _ in series(out, "val/l1")] == [3, 6]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "val_step0000003.png", "val_step0000006.png"]
    assert torch.load(out / "checkpoints" / "step=0000006.ckpt",
                      weights_only=True)["global_step"] == 6
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
    versions = sorted((out / "csv").iterdir())
    for sets, first in ((["optim.lr=1e-5"], "optim.lr: was 0.002, now 1e-05"),
                        (["optim.ema_decay=null"], "optim.ema_decay: was 0.9, now None"),
                        (["task=regression", "losses.gan.weight=0"], "task")):
        changed = tiny_config("tiny", "trainer.max_steps=2", *sets)
        with pytest.raises(ConfigError, match=rf"the run it resumes trained with other "
                                              rf"settings.* \(.*{first}"):
            train(changed, out, resume="auto")
        assert (out / "config.yaml").read_bytes() == saved
    # feed_lr sets the discriminator's input channels: a raw size-mismatch RuntimeError (exit
    # 1) after config.yaml was rewritten and a csv version added; the seed and the split
    # keys were taken silently (another split can move trained tiles into validation)
    for sets, first in (
            (["losses.gan.feed_lr=true"], r"losses.gan.feed_lr: was False, now True: it sets "
                                          r"the discriminator's input channels"),
            (["seed=1"], r"seed: was 0, now 1: it draws the training order"),
            (["data.split_seed=1"], r"data.split_seed: was 0, now 1: it chooses the train/val "
                                    r"split"),
            (["data.split_group=1"], r"data.split_group: was 2, now 1"),
            (["data.val_fraction=0.3"], r"data.val_fraction: was 0.25, now 0.3"),
            ([f"data.splits={out / 'splits.json'}"], r"data.splits: was None, now '.*splits")):
        changed = tiny_config("tiny", "trainer.max_steps=2", *sets)
        with pytest.raises(ConfigError, match=rf"^{out / 'checkpoints' / 'last.ckpt'}: the run "
                                              rf"it resumes .*\({first}.*\); resume with the "
                                              r"run's values .*--resume never --overwrite there, "
                                              r"or another --out$"):
            train(changed, out, resume="auto")
        assert (out / "config.yaml").read_bytes() == saved
        assert sorted((out / "csv").iterdir()) == versions
    # a loss weight is read each step: it may change on resume; so may the validation's
    # pairs and frames
    train(tiny_config("tiny", "trainer.max_steps=2", "losses.pixel.weight=0.5",
                      "data.val_seed=3", "data.max_val_pairs=3"), out, resume="auto")


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

    from zoomsr.training.callbacks import _NoTips

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


class _Killed(BaseException):
    """A kill (SIGKILL, a job's time limit) in the middle of a write."""


def test_a_kill_mid_save_never_leaves_a_torn_checkpoint(tiny_config, tmp_path, monkeypatch):
    """Lightning wrote a checkpoint to $TMPDIR and renamed it; with the run folder on another
    filesystem (a cluster's scratch) the rename failed (EXDEV) and it copied into last.ckpt
    opened with O_TRUNC: a kill mid-copy left last.ckpt truncated, and every resume failed."""
    import contextlib
    import errno
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from zoomsr.training.run import build_trainer

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"global_step": 1}, last)
    scratch = tmp_path / "tmpdir"  # $TMPDIR, on "another filesystem"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def across(real):
        def move(src, dst, *args, **kwargs):
            if (scratch in Path(src).parents) != (scratch in Path(dst).parents):
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            return real(src, dst, *args, **kwargs)
        return move

    def killed_copy(src, dst, *args, **kwargs):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise _Killed

    monkeypatch.setattr(os, "rename", across(os.rename))
    monkeypatch.setattr(os, "replace", across(os.replace))
    monkeypatch.setattr(shutil, "copyfile", killed_copy)
    trainer, _ = build_trainer(tiny_config("tiny"), out)
    io = trainer.strategy.checkpoint_io
    new = {"global_step": 2, "weights": torch.arange(10_000.0)}
    with contextlib.suppress(_Killed):  # the old way: killed mid-copy, last.ckpt torn
        io.save_checkpoint(new, last)
    # written beside last.ckpt and renamed over it: no copy across filesystems to kill
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]
    # killed while writing its temporary file: last.ckpt stays as it was
    real_save = torch.save

    def killed_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)
        raise _Killed

    monkeypatch.setattr(torch, "save", killed_save)
    with pytest.raises(_Killed):
        io.save_checkpoint({"global_step": 3}, last)
    monkeypatch.undo()
    assert torch.load(last, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_an_unreadable_last_checkpoint_names_the_newest_readable_step_checkpoint(tiny_config,
                                                                                 tmp_path):
    """A truncated last.ckpt was "not a readable PyTorch checkpoint ...; download or save it
    again": the step checkpoints beside it were not mentioned."""
    common = ("trainer.checkpoint_every_n_steps=1", "trainer.val_every_n_steps=100",
              "data.max_val_pairs=2")
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    train(tiny_config("tiny", "trainer.max_steps=3", *common), out)
    assert _ckpt_names(out) == ["last.ckpt", "step=0000001.ckpt", "step=0000002.ckpt",
                                "step=0000003.ckpt"]
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 2])
    (ckpts / "step=0000003.ckpt").write_bytes(data[:100])  # this one too
    more = tiny_config("tiny", "trainer.max_steps=4", *common)
    config = (out / "config.yaml").read_bytes()
    with pytest.raises(CheckpointError, match=(
            rf"^{ckpts / 'last.ckpt'} is not a readable PyTorch checkpoint \(.*\); --resume "
            rf"{ckpts / 'step=0000002.ckpt'} continues from the newest readable step "
            r"checkpoint \(step 2\), --resume never --overwrite starts afresh there$")):
        train(more, out)
    assert (out / "config.yaml").read_bytes() == config
    # what it says works; a temporary file a killed save left is removed
    (ckpts / ".last.ckpt.abcd1234.ckpt.tmp").write_bytes(data[:100])
    result = train(more, out, resume=ckpts / "step=0000002.ckpt")
    assert result.global_step == 4
    assert _ckpt_names(out) == ["last.ckpt", "step=0000002.ckpt", "step=0000003.ckpt",
                                "step=0000004.ckpt"]
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 4


def test_a_second_run_in_the_same_folder_is_refused_while_the_first_runs(tiny_config,
                                                                          tmp_path):
    """A requeued job while the old one still ran: both resumed from and overwrote the same
    last.ckpt, step checkpoints and generator.pth, and both exited 0."""
    from zoomsr.errors import InputError

    cfg = tiny_config("tiny", "trainer.max_steps=3", "trainer.checkpoint_every_n_steps=1",
                      "trainer.val_every_n_steps=100", "data.max_val_pairs=2")
    out = tmp_path / "run"
    refused: list[str] = []

    class SecondRun(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:  # noqa: ANN002
            if trainer.global_step != 2:
                return
            before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
            try:
                train(cfg, out)
            except InputError as exc:
                refused.append(str(exc))
            assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    assert train(cfg, out, callbacks=[SecondRun()]).global_step == 3
    assert len(refused) == 1
    assert refused[0] == (f"{out}: another zoomsr train run is using this run folder (it holds "
                          f"{out / '.generator.pth.zoomsr-lock'}); wait for it to end or stop "
                          "it, or choose another --out")
    assert not (out / ".generator.pth.zoomsr-lock").exists()  # released at the end
    more = tiny_config("tiny", "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=1",
                       "trainer.val_every_n_steps=100", "data.max_val_pairs=2")
    assert train(more, out).global_step == 4


def test_only_the_first_process_of_a_run_takes_its_folder(monkeypatch):
    """DDP: Lightning starts the other ranks as the same command (LOCAL_RANK set), torchrun
    and SLURM set RANK / SLURM_PROCID; those must not take the lock rank 0 holds."""
    from zoomsr.training.run import _RANK_VARIABLES, _launched_first

    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert _launched_first()
    for name, value, first in (("RANK", "0", True), ("LOCAL_RANK", "1", False),
                               ("NODE_RANK", "1", False), ("SLURM_PROCID", "3", False)):
        monkeypatch.setenv(name, value)
        assert _launched_first() is first, name
        monkeypatch.delenv(name)
