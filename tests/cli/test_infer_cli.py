"""``zoomsr infer`` through the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from infer_helpers import write_b08, write_frames  # noqa: E402 - the inference tests' generator

from zoomsr_needs import require_realesrgan_ncnn  # noqa: E402

TINY = ["--model", "rrdbnet", "--config", "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4",
        "--random-weights", "--window", "32", "--overlap", "8", "--no-progress",
        "--device", "cpu"]


def test_infer_random_model(cli, tmp_path):
    write_frames(tmp_path / "in", n=3, size=(40, 48))
    out = tmp_path / "sr.tif"
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--cog", "--save-lr")
    assert code == 0, err
    assert "wrote" in stdout and "km2/s" in stdout
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.width == 192 and ds.crs.to_epsg() == 3857
    assert (tmp_path / "sr.lr.tif").is_file()
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY)
    assert code == 2 and "--overwrite" in err


def test_infer_uncertainty_band(cli, tmp_path):
    write_frames(tmp_path / "in", n=4, size=(24, 24))
    out = tmp_path / "sr.tif"
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--uncertainty", "3")
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.count == 4 and ds.descriptions[3] == "uncertainty"
        assert "standard deviation" in ds.tags()["zoomsr_uncertainty"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d.mkdir(), "no raster found"),
        (lambda d: (d.mkdir(), (d / "x_TCI.tif").write_bytes(b"II*\0garbage")), "not a readable"),
    ],
)
def test_infer_bad_inputs_exit_2(cli, tmp_path, make, message):
    folder = tmp_path / "in"
    make(folder)
    code, stdout, err = cli("infer", folder, "-o", tmp_path / "o.tif", *TINY)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(folder) in lines[0]


def test_a_device_that_is_not_there_is_named_as_the_option(cli, tmp_path, monkeypatch):
    import torch

    write_frames(tmp_path / "in", n=2, size=(24, 24))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = [a for a in TINY if a not in ("--device", "cpu")]
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", *args,
                       "--device", "cuda:0")
    assert code == 2 and err.strip() == "error: --device cuda:0: no CUDA GPU is available"


def test_ctrl_c_says_what_was_kept_and_how_to_resume(cli, tmp_path, monkeypatch):
    """Before the first row is finished nothing is kept (and nothing to resume is claimed);
    after it, the rows are kept and --resume continues."""
    import zoomsr.inference.pipeline as pipeline
    from zoomsr.inference.writer import partial_dir

    real = pipeline.run_inference

    def before_any_row(*args, **kwargs):
        raise KeyboardInterrupt

    def after_the_first_row(*args, **kwargs):
        def stop(done, total):
            raise KeyboardInterrupt

        return real(*args, on_row=stop, **kwargs)

    write_frames(tmp_path / "in", n=2, size=(80, 24))
    out = tmp_path / "o.tif"
    monkeypatch.setattr(pipeline, "run_inference", before_any_row)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY)
    assert code == 130
    assert err.strip() == "interrupted before the first row was finished: nothing was kept"
    monkeypatch.setattr(pipeline, "run_inference", after_the_first_row)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--window", "32",
                       "--overlap", "8")
    assert code == 130 and not out.exists()
    assert err.strip() == (f"interrupted: the rows finished so far are kept (in "
                           f"{partial_dir(out)}); run the same command with --resume to continue")
    monkeypatch.setattr(pipeline, "run_inference", real)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--window", "32",
                       "--overlap", "8", "--resume")
    assert code == 0, err
    assert out.is_file() and not partial_dir(out).exists()


def test_a_ctrl_c_just_after_the_output_is_written(cli, tmp_path, monkeypatch):
    """A Ctrl-C landing as the finished run removed its partial folder cut that removal
    (an empty folder was left, and --resume then refused: "already exists") and said
    "nothing was kept" beside a complete output. The removal now ends first, the message
    says the output is complete, and --resume finds it finished. An older output that an
    interrupted --overwrite run did not replace is not claimed as written."""
    import os
    import signal

    import zoomsr.inference.pipeline as pipeline
    import zoomsr.inference.writer as writer

    real_rmtree = writer.shutil.rmtree

    def rmtree_with_ctrl_c(path, *args, **kwargs):
        if str(path) == str(writer.partial_dir(out)):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the folder is removed
        return real_rmtree(path, *args, **kwargs)

    write_frames(tmp_path / "in", n=2, size=(80, 24))
    out = tmp_path / "o.tif"
    monkeypatch.setattr(writer.shutil, "rmtree", rmtree_with_ctrl_c)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY)
    monkeypatch.setattr(writer.shutil, "rmtree", real_rmtree)
    assert code == 130
    assert err.strip() == f"interrupted after {out} was written: it is complete"
    assert out.is_file() and not writer.partial_dir(out).exists()
    assert cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume")[0] == 0
    # a partial folder with no saved state (a crash while it was removed): still finished
    writer.partial_dir(out).mkdir()
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume")
    assert code == 0 and "finished by an earlier run" in stdout, err

    def before_any_row(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_inference", before_any_row)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--overwrite")
    assert code == 130
    assert err.strip() == "interrupted before the first row was finished: nothing was kept"


def test_a_ctrl_c_between_the_output_and_the_end_of_the_run(cli, tmp_path, monkeypatch):
    """Between the output's rename and the removal of the partial folder (threads joined,
    side outputs written) a Ctrl-C said "the rows finished so far are kept" beside a complete
    output, and left the folder. Now: complete, the folder removed; with a side output still
    to write, --resume writes it."""
    import zoomsr.inference.pipeline as pipeline
    from zoomsr.inference.writer import partial_dir

    real = pipeline.write_side_outputs

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    write_frames(tmp_path / "in", n=2, size=(80, 24))
    out = tmp_path / "o.tif"
    monkeypatch.setattr(pipeline, "write_side_outputs", ctrl_c)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY)
    assert code == 130 and err.strip() == f"interrupted after {out} was written: it is complete"
    assert out.is_file() and not partial_dir(out).exists()
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--preview", "--overwrite")
    assert code == 130 and err.strip() == (
        f"interrupted after {out} was written (it is complete), before o.preview.png: run the "
        "same command with --resume to write it")
    monkeypatch.setattr(pipeline, "write_side_outputs", real)
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--preview", "--resume")
    assert code == 0, err
    assert (tmp_path / "o.preview.png").is_file() and not partial_dir(out).exists()


def test_notes_tell_repeated_dates_from_gaps(cli, tmp_path):
    write_frames(tmp_path / "one", n=1, size=(24, 24))
    code, out, err = cli("infer", tmp_path / "one", "-o", tmp_path / "a.tif", *TINY)
    assert code == 0, err
    assert "note: 1 date(s) for a model of 2 images: the best dates were repeated" in out
    write_frames(tmp_path / "gaps", n=3, size=(40, 48), holes={0: (slice(0, 40), slice(0, 20)),
                                                              1: (slice(0, 40), slice(0, 20))})
    code, out, err = cli("infer", tmp_path / "gaps", "-o", tmp_path / "b.tif", *TINY)
    assert code == 0, err
    assert ("window(s) had fewer than 2 dates free of nodata where other dates have "
            "data (gaps, swath edges, smaller footprints)") in out
    # a single-image model: no date free of nodata (each misses part of the other's data)
    write_frames(tmp_path / "apart", n=2, size=(24, 24), holes={0: (slice(0, 24), slice(0, 6)),
                                                               1: (slice(0, 24), slice(8, 14))})
    one = [*TINY, "--config", "num_in_ch=3,num_feat=8,num_block=1,num_grow_ch=4"]
    code, out, err = cli("infer", tmp_path / "apart", "-o", tmp_path / "c.tif", *one)
    assert code == 0, err
    assert "note: 1 window(s) had no date free of nodata where other dates have data" in out


def test_infer_bad_options(cli, tmp_path):
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", *TINY,
                       "--overlap", "40")
    assert code == 2 and "overlap" in err
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--model", "sr3",
                       "-c", "in_channels=7", "--random-weights", "--no-progress")
    assert code == 2 and "sr3 with in_channels=7 cannot take frames of bands tci" in err
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", *TINY,
                       "--column-width", "100")
    assert code == 2 and "--column-width 100: strips narrower than 512 LR px" in err
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", *TINY,
                       "--deflate-level", "13")
    assert code == 2 and "--deflate-level" in err and "less than or equal to 12" in err
    # --model without weights ran the default Real-ESRGAN whatever it named
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--model", "srcnn",
                       "--no-progress")
    assert code == 2 and err.strip() == ("error: --model srcnn needs --weights (a checkpoint "
                                         "of it) or --random-weights")
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--random-weights",
                       "--weights", tmp_path / "w.pth", "--model", "srcnn", "--no-progress")
    assert code == 2 and err.strip() == ("error: --random-weights and --weights exclude each "
                                         "other: give one")
    assert not (tmp_path / "o.tif").exists()


def test_the_deflate_level_changes_the_files_size_not_its_pixels(cli, tmp_path):
    """--deflate-level reaches the output and the LR mosaic (smaller at 9 than at 1), and
    the pixels, the mask and the tags' content are the same."""
    write_frames(tmp_path / "in", n=2, size=(48, 48))
    files = {}
    for level in ("1", "9"):
        out = tmp_path / level / "sr.tif"
        code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--save-lr",
                           "--deflate-level", level)
        assert code == 0, err
        files[level] = out, out.with_name("sr.lr.tif")
    for k in (0, 1):
        fast, small = files["1"][k], files["9"][k]
        assert fast.stat().st_size > small.stat().st_size
        with rasterio.open(fast) as a, rasterio.open(small) as b:
            assert (a.read() == b.read()).all() and (a.dataset_mask() == b.dataset_mask()).all()


def test_deflate_level_is_checked_in_the_python_api():
    from zoomsr.errors import ConfigError
    from zoomsr.inference import InferenceOptions

    for bad, message in [(0, ">= 1"), (13, "<= 12"), (4.5, "an integer")]:
        with pytest.raises(ConfigError, match=f"deflate_level must be {message}"):
            InferenceOptions(deflate_level=bad)


@pytest.mark.slow
def test_infer_default_realesrgan(cli, tmp_path, monkeypatch):
    """The default weights (Real-ESRGAN x4plus, converted offline) through the whole path."""
    require_realesrgan_ncnn()
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    write_frames(tmp_path / "in", n=2, size=(12, 12))
    out = tmp_path / "sr.tif"
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, "--no-progress",
                            "--device", "cpu")
    assert code == 0, err
    assert "realesrgan-x4plus (1 image(s))" in stdout
    with rasterio.open(out) as ds:
        assert ds.tags()["zoomsr_model"] == "realesrgan-x4plus" and ds.width == 48


def test_infer_band_model_reads_b08_files(cli, tmp_path):
    """--bands tci,b08: each date's B08 file (same name but the band token) is the 4th channel."""
    paths = write_frames(tmp_path / "in", n=2, size=(24, 32))
    write_b08(paths, 3000)
    band_model = [a if a != "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4"
                  else "num_in_ch=8,num_feat=8,num_block=1,num_grow_ch=4" for a in TINY]
    out = tmp_path / "sr.tif"
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *band_model, "--bands", "tci,b08",
                       "--dn-offset", "0", "--threads", "2")
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.width == 128
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", *band_model)
    assert code == 2 and "--bands tci,b08" in err  # 8 channels: not RGB frames
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--weights",
                       "esrgan-10m", "--bands", "tci", "--no-progress")
    assert code == 2 and "esrgan-10m takes bands tci,b08" in err


def test_infer_checkpoint_errors_are_one_line_with_cli_hints(cli, tmp_path):
    """A BasicSR file without --model, a config mismatch and a corrupt file: one line each,
    naming the file, with the CLI's options (not only Python calls)."""
    import torch

    from zoomsr.models import create_model

    write_frames(tmp_path / "in", n=2, size=(24, 24))
    # an SRCNN's tensors do not tell its config (an RRDBNet's do: it loads, below)
    net = create_model("srcnn", revisits=2, hidden_channels=16)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "net_g.pth")
    (tmp_path / "junk.pth").write_bytes(bytes(range(256)) * 20)
    base = ["-o", tmp_path / "o.tif", "--no-progress", "--device", "cpu"]
    cases = [
        (["-w", tmp_path / "net_g.pth"], "CLI: --model NAME [-c key=value]"),
        (["-w", tmp_path / "net_g.pth", "--model", "srcnn"], "CLI: --model srcnn -c key=value"),
        (["-w", tmp_path / "junk.pth"], "is not a readable PyTorch checkpoint"),
    ]
    for args, hint in cases:
        code, _, err = cli("infer", tmp_path / "in", *base, *args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and hint in lines[0], err
        assert str(args[1]) in lines[0] and len(lines[0]) < 900
        assert "weights_only" not in lines[0]
    rrdb = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    torch.save({"params_ema": rrdb.state_dict()}, tmp_path / "rrdb.pth")
    code, _, err = cli("infer", tmp_path / "in", *base, "-w", tmp_path / "rrdb.pth")
    assert code == 0, err


def test_chunk_layout_report_counts_tiles(cli, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_dataset.parent)  # a relative INPUT: the tag names it absolutely
    code, out, err = cli("infer", tiny_dataset.name, "-o", tmp_path / "grid.tif", *TINY)
    assert code == 0, err
    assert "4 S2-NAIP tile(s), each a chunk" in out and "0 input frame" not in out
    # TINY's --window/--overlap have no use here: said, not dropped silently
    assert ("ignored: --window/--overlap/--margin: each 32 px tile is one chunk, as in "
            "training (no windows, no overlap)") in out
    with rasterio.open(tmp_path / "grid.tif") as ds:
        assert ds.tags()["zoomsr_inputs"].startswith(f"S2-NAIP chunks {tiny_dataset} (4 tiles")
    # a progress bar, as for scenes (there was none: a slow model looked hung)
    with_bar = [a for a in TINY if a != "--no-progress"]
    code, out, err = cli("infer", tiny_dataset.name, "-o", tmp_path / "bar.tif", *with_bar)
    assert code == 0 and "super-resolving tiles" in err and "4/4" in err, err


def test_chunk_layout_on_ray_is_refused_before_ray_starts(cli, tiny_dataset, tmp_path):
    code, _, err = cli("infer", tiny_dataset, "-o", tmp_path / "grid.tif", *TINY, "--ray",
                       "127.0.0.1:1")
    assert code == 2 and err.strip() == (f"error: {tiny_dataset}: S2-NAIP chunk input runs "
                                         "locally; drop --ray (its tiles are small and "
                                         "independent: one machine does them fast)")


def test_chunk_layout_refuses_grid_and_uncertainty_options_naming_them(cli, tiny_dataset,
                                                                       tmp_path):
    out = tmp_path / "grid.tif"
    code, _, err = cli("infer", tiny_dataset, "-o", out, *TINY, "--native-grid")
    assert code == 2 and err.strip() == (f"error: {tiny_dataset}: --native-grid: S2-NAIP chunks "
                                         "are on the training grid already (EPSG:3857 tiles); "
                                         "drop the option")
    code, _, err = cli("infer", tiny_dataset, "-o", out, *TINY, "--uncertainty", "3")
    assert code == 2 and err.startswith(f"error: {tiny_dataset}: --uncertainty: not available "
                                        "for S2-NAIP chunk input")
    assert not out.exists()


def test_weights_folder_is_named_as_a_folder(cli, tmp_path):
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    (tmp_path / "w").mkdir()
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--weights",
                       tmp_path / "w", "--no-progress", "--device", "cpu")
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'w'}: is a folder; give a checkpoint file"


def test_chunk_layout_short_series_note(cli, tiny_dataset, tmp_path):
    eight = list(TINY)
    eight[eight.index("--config") + 1] = "num_in_ch=24,num_feat=8,num_block=1,num_grow_ch=4"
    code, out, err = cli("infer", tiny_dataset, "-o", tmp_path / "grid.tif", *eight)
    assert code == 0, err
    assert ("note: 4 tile(s) had fewer than 8 time steps free of black pixels where other "
            "steps have data (a short series, or black steps): the black pixels were filled "
            "from the other steps, and a series shorter than the model's repeated its best "
            "steps") in out
    assert "gaps were filled" not in out


def test_input_warnings_are_one_line_and_the_run_goes_on(cli, tmp_path):
    paths = write_frames(tmp_path / "in", n=3, size=(40, 48))
    with rasterio.open(paths[1], "r+") as ds:  # a date that is nodata everywhere
        ds.write(0 * ds.read())
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "sr.tif", *TINY)
    assert code == 0, err
    assert err.splitlines() == [f"warning: {paths[1]}: no valid pixels seen (all nodata, black "
                                "or NaN in a decimated look): this date adds nothing"]


def test_a_geographic_native_grid_is_reported_in_degrees(cli, tmp_path):
    from affine import Affine

    write_frames(tmp_path / "in", n=2, size=(40, 48), crs="EPSG:4326",
                 transform=Affine(1e-4, 0, 10.0, 0, -1e-4, 45.0))
    out = tmp_path / "sr.tif"
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--native-grid")
    assert code == 0, err
    assert "(192x160 px, 2.5e-05 deg, EPSG:4326)" in stdout
    with rasterio.open(out) as ds:
        assert ds.tags()["zoomsr_grid"] == "native EPSG:4326 0.0001 deg -> 2.5e-05 deg"


def test_a_custom_crs_is_not_reported_as_the_code_it_resembles(cli, tmp_path):
    """A transverse Mercator on the International ellipsoid with its own datum shift was
    reported as EPSG:23032 (rasterio's closest code), which the file is not."""
    from affine import Affine

    proj = ("+proj=tmerc +lat_0=0 +lon_0=9 +k=0.9996 +x_0=500000 +y_0=0 +ellps=intl "
            "+towgs84=-87,-98,-121,0,0,0,0 +units=m +no_defs")
    write_frames(tmp_path / "in", n=2, size=(24, 24), crs=proj,
                 transform=Affine(10, 0, 500000, 0, -10, 5000000))
    out = tmp_path / "sr.tif"
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--native-grid")
    assert code == 0, err
    assert "(96x96 px, 2.5 m, +proj=" in stdout and "+towgs84=-87,-98,-121" in stdout
    assert "EPSG" not in stdout and "=True" not in stdout


def test_resume_of_a_finished_run_succeeds_as_with_scenes(cli, tmp_path):
    """A requeued job re-runs its command: a finished output is kept, exit 0."""
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "sr.tif"
    assert cli("infer", tmp_path / "in", "-o", out, *TINY)[0] == 0
    before = out.read_bytes()
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume")
    assert code == 0, err
    assert stdout.strip() == (f"{out}: finished by an earlier run, nothing to resume "
                              "(--overwrite computes it again)")
    assert out.read_bytes() == before
    # not trusted blindly: a side output the earlier run did not write, or another file there
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume", "--preview")
    assert code == 2 and err.strip() == (
        f"error: {out}: finished by an earlier run without --preview ({out.stem}.preview.png "
        "is missing); --resume cannot add it: pass --overwrite to compute it again with "
        "--preview")
    other = tmp_path / "other.tif"
    other.write_bytes(b"not a zoomsr output")
    code, _, err = cli("infer", tmp_path / "in", "-o", other, *TINY, "--resume")
    assert code == 2 and "already exists" in err and other.read_bytes() == b"not a zoomsr output"
    # an input rewritten since (same name, other pixels): not done either
    import os

    frame = sorted((tmp_path / "in").glob("*.tif"))[0]
    st = frame.stat()
    write_frames(tmp_path / "in", n=1, size=(24, 24), seed=7)
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *TINY, "--resume")
    assert code == 2 and err.strip() == (
        f"error: {out}: finished by an earlier run, but {frame.resolve()} changed since (size "
        "or time); --resume continues only that run: pass --overwrite to compute it again")
    # a requeued job that now asks for another result is not told it is done
    write_frames(tmp_path / "in2", n=2, size=(24, 24), seed=5)
    code, _, err = cli("infer", tmp_path / "in2", "-o", out, *TINY, "--resume")
    assert code == 2 and err.startswith(f"error: {out}: finished by an earlier run of other "
                                        "inputs (2 of its files not among them now, e.g. ")
    assert err.strip().endswith("--resume continues only that run: pass --overwrite to "
                                "compute it again")
    wider = [*TINY]
    wider[wider.index("--config") + 1] = "num_in_ch=6,num_feat=4,num_block=1,num_grow_ch=4"
    code, _, err = cli("infer", tmp_path / "in", "-o", out, *wider, "--resume")
    assert code == 2 and "finished by an earlier run with other weights (SHA-256 " in err
    assert out.read_bytes() == before



def test_resume_of_a_finished_run_with_other_options_is_refused(cli, tmp_path):
    """A requeued job whose command now asks for band 4, the native grid, a COG, another
    tiling or another seed of the subsets was told "finished" (exit 0) and kept the old file."""
    write_frames(tmp_path / "in", n=3, size=(24, 24))
    out = tmp_path / "sr.tif"
    assert cli("infer", tmp_path / "in", "-o", out, *TINY, "--uncertainty", "2")[0] == 0
    before = out.read_bytes()
    run = ["infer", tmp_path / "in", "-o", out, *TINY, "--resume"]
    assert cli(*run, "--uncertainty", "2")[0] == 0  # the same command: finished
    for extra, diff in (
        ([], "--uncertainty 0, it was 2"),
        (["--uncertainty", "2", "--seed", "4"], "--seed 4, it was 0"),
        (["--uncertainty", "2", "--native-grid"], "--native-grid given, it was not used"),
        (["--uncertainty", "2", "--cog"], "--cog given, it is not a COG"),
        (["--uncertainty", "2", "--overlap", "6"], "--overlap 6, it was 8"),
        (["--uncertainty", "2", "--precision", "bf16"], "--precision bf16, it was fp32"),
        # how the pixels are read (a partial run's state compared them; a finished one's not)
        (["--uncertainty", "2", "--rgb-bands", "3,2,1"], "--rgb-bands 3,2,1, it was 1,2,3"),
        (["--uncertainty", "2", "--radiometry", "dn"], "--radiometry dn, it was tci"),
    ):
        code, stdout, err = cli(*run, *extra)
        assert code == 2 and not stdout, (extra, stdout)
        assert err.strip() == (f"error: {out}: finished by an earlier run with other options "
                               f"({diff}); --resume continues only that run: pass --overwrite "
                               "to compute it again"), extra
    assert out.read_bytes() == before


def test_side_outputs_of_another_run_are_not_taken_for_its_own(cli, tmp_path):
    """--overwrite without --save-lr left the earlier run's sr.lr.tif; --resume --save-lr
    then called the output finished, with an LR mosaic of other inputs."""
    write_frames(tmp_path / "a", n=2, size=(24, 24), seed=1)
    write_frames(tmp_path / "b", n=2, size=(24, 24), seed=2)
    out = tmp_path / "sr.tif"
    assert cli("infer", tmp_path / "a", "-o", out, *TINY, "--save-lr")[0] == 0
    first_lr = (tmp_path / "sr.lr.tif").read_bytes()
    assert cli("infer", tmp_path / "b", "-o", out, *TINY, "--overwrite")[0] == 0
    assert not (tmp_path / "sr.lr.tif").exists()  # removed now: not this run's
    (tmp_path / "sr.lr.tif").write_bytes(first_lr)  # put back (by hand, or an older zoomsr)
    code, _, err = cli("infer", tmp_path / "b", "-o", out, *TINY, "--save-lr", "--resume")
    assert code == 2 and "finished by an earlier run without --save-lr (sr.lr.tif is " \
        "another run's)" in err


def test_resume_of_a_finished_run_with_another_dn_offset_is_refused(cli, tmp_path):
    write_frames(tmp_path / "in", n=2, size=(24, 24), dtype="uint16")
    out = tmp_path / "sr.tif"
    run = ["infer", tmp_path / "in", "-o", out, *TINY, "--native-grid"]
    assert cli(*run, "--dn-offset", "0")[0] == 0
    assert cli(*run, "--dn-offset", "0", "--resume")[0] == 0
    code, _, err = cli(*run, "--dn-offset", "1000", "--resume")
    assert code == 2 and "other options (--dn-offset 1000, it was 0)" in err


def test_resume_of_a_finished_run_with_another_offset_of_its_extra_band(cli, tmp_path):
    """TCI frames with B08 files: the B08's offset was not compared (only the frames')."""
    write_b08(write_frames(tmp_path / "in", n=2, size=(24, 24)), 3000)
    out = tmp_path / "sr.tif"
    run = ["infer", tmp_path / "in", "-o", out, "--model", "rrdbnet", "--config",
           "num_in_ch=8,num_feat=8,num_block=1,num_grow_ch=4", "--random-weights",
           "--bands", "tci,b08", "--no-progress", "--device", "cpu"]
    assert cli(*run, "--dn-offset", "0")[0] == 0
    code, _, err = cli(*run, "--dn-offset", "1000", "--resume")
    assert code == 2 and "other options (--dn-offset 1000, it was 0)" in err, err


def test_resume_of_a_finished_run_from_a_glob_or_removed_inputs(cli, tmp_path):
    """The output written into its input folder, given by a glob (`in/*.tif`), which then
    holds it; or inputs staged for the job and removed after it: still finished, exit 0."""
    frames = write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "in" / "sr.tif"
    assert cli("infer", *frames, "-o", out, *TINY, "--save-lr")[0] == 0
    globbed = sorted((tmp_path / "in").glob("*.tif"))
    assert out in globbed and len(globbed) == 4  # the frames, sr.tif, sr.lr.tif
    code, stdout, err = cli("infer", *globbed, "-o", out, *TINY, "--save-lr", "--resume")
    assert code == 0 and "finished by an earlier run, nothing to resume" in stdout, err
    for f in frames:
        f.unlink()
    code, stdout, err = cli("infer", *frames, "-o", out, *TINY, "--save-lr", "--resume")
    assert code == 0 and "finished by an earlier run, nothing to resume" in stdout, err


def test_resume_knows_the_weights_by_content_not_by_the_path_typed(cli, tmp_path, monkeypatch):
    """The same checkpoint given as "w.pth" then "/abs/w.pth" (or moved) continues the run (it
    was refused: 'model (weights): was "w.pth", now "/abs/w.pth"'); the tag names the file by
    its absolute path; another file is still refused."""
    import zoomsr.inference.pipeline as pipeline
    from zoomsr.models import create_model, save_checkpoint

    real = pipeline.run_inference

    def after_the_first_row(*args, **kwargs):
        def stop(done, total):
            raise KeyboardInterrupt

        return real(*args, on_row=stop, **kwargs)

    write_frames(tmp_path / "in", n=2, size=(80, 24))
    net = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    save_checkpoint(net, tmp_path / "w.pth")
    out = tmp_path / "o.tif"
    opts = ["--window", "32", "--overlap", "8", "--no-progress", "--device", "cpu"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "run_inference", after_the_first_row)
    assert cli("infer", "in", "-o", out, "--weights", "w.pth", *opts)[0] == 130
    monkeypatch.setattr(pipeline, "run_inference", real)
    other = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4)
    save_checkpoint(other, tmp_path / "other.pth")
    code, _, err = cli("infer", "in", "-o", out, "--weights", "other.pth", *opts, "--resume")
    assert code == 2 and "weights_sha256" in err, err
    (tmp_path / "moved").mkdir()
    (tmp_path / "w.pth").rename(tmp_path / "moved" / "w.pth")
    code, _, err = cli("infer", tmp_path / "in", "-o", out, "--weights",
                       tmp_path / "moved" / "w.pth", *opts, "--resume")
    assert code == 0, err
    with rasterio.open(out) as ds:
        assert ds.tags()["zoomsr_weights"] == str(tmp_path / "moved" / "w.pth")


def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path):
    """SIGTERM (SLURM's time limit, `kill`, `docker stop`) mid-run: exit 130, the rows kept,
    the line on how to go on, no temporary file (it ended the process at once, leaving one)."""
    import os
    import signal
    import subprocess

    write_frames(tmp_path / "in", n=2, size=(80, 24))
    out = tmp_path / "out" / "o.tif"
    script = (
        "import sys, time\n"
        "import zoomsr.inference.pipeline as pipeline\n"
        "from zoomsr.cli.main import run\n"
        "real = pipeline.run_inference\n"
        "def slow(*args, **kwargs):\n"
        "    def on_row(done, total):\n"
        "        print('row', flush=True)\n"
        "        time.sleep(60)\n"
        "    return real(*args, on_row=on_row, **kwargs)\n"
        "pipeline.run_inference = slow\n"
        "sys.argv = ['zoomsr', 'infer', *sys.argv[1:]]\n"
        "run()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "in"), "-o", str(out),
                             *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "row"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    from zoomsr.inference.writer import partial_dir

    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"interrupted: the rows finished so far are kept (in {partial_dir(out)}); run the same "
        "command with --resume to continue")
    assert sorted(p.name for p in out.parent.iterdir()) == [partial_dir(out).name]


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(cli, tmp_path):
    """SIGKILL or the OOM killer during the final write leaves the temporary GeoTIFF (as large
    as the output): the next run of that output removes it once done, and nothing else."""
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    out = tmp_path / "o.tif"
    stale = tmp_path / ".o.tif.jky_krbk.tif.tmp"  # atomic_path's name for it
    stale.write_bytes(b"half a GeoTIFF")
    other = tmp_path / ".other.tif.abcdefgh.tif.tmp"
    other.write_bytes(b"another output's")
    assert cli("infer", tmp_path / "in", "-o", out, *TINY)[0] == 0
    assert not stale.exists() and other.exists() and out.is_file()


def test_an_empty_input_argument_is_refused_not_the_current_folder(cli, tmp_path, monkeypatch):
    """`zoomsr infer "$SCENE"` with SCENE unset: Typer made "" the current folder, scanned."""
    write_frames(tmp_path / "in", n=2, size=(24, 24))
    monkeypatch.chdir(tmp_path / "in")  # a folder of good frames: it ran on them
    code, _, err = cli("infer", "", "-o", tmp_path / "o.tif", *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.strip() == ("error: an empty argument as an argument of `zoomsr infer` (''): an "
                           "unset shell variable? give the path or value (. for the current "
                           "folder)")
    assert not (tmp_path / "o.tif").exists()


def test_many_files_set_aside_are_summed_up_by_reason(cli, tmp_path):
    """A SAFE product's other bands and resolutions printed ~28 "ignored:" lines a date; past
    IGNORED_LISTED files, one line per reason with the count and an example."""
    from zoomsr.cli.infer import IGNORED_LISTED, ignored_lines

    frames = write_frames(tmp_path / "in", n=IGNORED_LISTED + 1, size=(16, 16))
    b08 = write_b08(frames, 100)
    out = tmp_path / "sr.tif"
    code, stdout, err = cli("infer", tmp_path / "in", "-o", out, *TINY)
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("ignored:")]
    assert lines == [f"ignored: {len(b08)} files: not a band this model takes (e.g. {b08[0]})"]
    few = [f"{p}: not a band this model takes" for p in b08[:IGNORED_LISTED]]
    assert ignored_lines(few) == few  # up to the limit: each file
    mixed = few + [f"{frames[0]}: red also at a finer resolution (x_B04_10m.jp2), used",
                   f"{frames[1]}: red also at a finer resolution (y_B04_10m.jp2), used",
                   "--dn-offset 1000: no input holds 16-bit digital numbers (tci)"]
    assert ignored_lines(mixed) == [
        f"{IGNORED_LISTED} files: not a band this model takes (e.g. {b08[0]})",
        f"2 files: red also at a finer resolution, used (e.g. {frames[0]})",
        "--dn-offset 1000: no input holds 16-bit digital numbers (tci)"]


@pytest.mark.parametrize(("args", "message"), [
    (["--window", "0"], "--window must be >= 1 LR pixel, got 0"),
    (["--window", "16", "--overlap", "16"], "--overlap must be in 0..window-1 (15), got 16"),
    (["--margin", "1000"], "--margin must be in 0..overlap/2 (16), got 1000"),
    (["--uncertainty", "1"], "--uncertainty needs K >= 2 frame subsets, got 1"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--radiometry", "foo"], "--radiometry must be one of auto, "),
    (["--precision", "fp16"], "--precision must be one of auto, fp32, bf16, got 'fp16'"),
])
def test_bad_option_values_name_the_flag(cli, tmp_path, args, message):
    """The library's checks name their parameters ("window must be >= 1"): the CLI said
    that, where --device, --column-width and the others named their flags."""
    write_frames(tmp_path / "in", n=2, size=(16, 16))
    code, _, err = cli("infer", tmp_path / "in", "-o", tmp_path / "o.tif", "--no-progress",
                       "--device", "cpu", *args)
    assert code == 2 and err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1
