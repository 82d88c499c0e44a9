"""evaluate_model: a model's outputs on a dataset scored against its HR, with its HR masks."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dataset_fixtures import fixture_module
from zoomsr.data import PROBAVDataset, S2NAIPDataset, write_sample
from zoomsr.errors import DataError
from zoomsr.evaluation import evaluate_model, write_results
from zoomsr.evaluation.model_eval import as_rgb
from zoomsr.metrics import cpsnr, psnr, ssim


def _probav_fixture():
    return fixture_module("probav_fixture")


class Upsample(torch.nn.Module):
    """Mean of the frames (``[B, T, C, h, w]``) or of the stacked ones, bicubic x ``scale``."""

    def __init__(self, scale: int, channels: int, frames_layout: bool) -> None:
        super().__init__()
        self.scale, self.channels, self.frames_layout = scale, channels, frames_layout
        self.calls = 0

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert not self.training
        x = lr if self.frames_layout else lr.unflatten(1, (-1, self.channels))
        return F.interpolate(x.mean(1), scale_factor=self.scale, mode="bicubic",
                             align_corners=False)


class Contract(Dataset):
    """Items of the loaders' contract with known HR and masks."""

    def __init__(self, n: int = 5, masked: bool = True) -> None:
        g = torch.Generator().manual_seed(0)
        self.lr = torch.rand(n, 2, 3, 8, 8, generator=g)
        up = F.interpolate(self.lr.mean(1), scale_factor=4, mode="bicubic", align_corners=False)
        self.hr = up.clamp(0, 1) + 0.02 * torch.rand(up.shape, generator=g)
        self.hr = self.hr.clamp(0, 1)
        self.valid = torch.ones(n, 32, 32, dtype=torch.bool)
        if masked:
            self.valid[1, :, 20:] = False  # e.g. a cloud in the HR
            self.hr[1, :, :, 20:] = 1.0  # its garbage must not count
        self.masked = masked

    def __len__(self) -> int:
        return len(self.lr)

    def __getitem__(self, i: int) -> dict:
        item = {"lr": self.lr[i], "hr": self.hr[i], "id": f"s{i}", "band": None}
        if self.masked:
            item["hr_valid"] = self.valid[i]
        return item


def test_scores_equal_the_metrics_on_the_models_outputs_with_the_hr_masks():
    ds = Contract()
    model = Upsample(4, 3, frames_layout=True).train()
    seen = []
    result = evaluate_model(model, ds, "psnr,ssim,cpsnr", batch_size=2, device="cpu",
                            progress=lambda d, t: seen.append((d, t)))
    assert model.training and model.calls == 3  # restored; 5 items in batches of 2
    assert seen == [(2, 5), (4, 5), (5, 5)]
    out = F.interpolate(ds.lr.mean(1), scale_factor=4, mode="bicubic",
                        align_corners=False).clamp(0, 1)
    want = {"psnr": psnr(out, ds.hr, valid=ds.valid), "ssim": ssim(out, ds.hr, valid=ds.valid),
            "cpsnr": cpsnr(out, ds.hr, valid=ds.valid)}
    assert [r["key"] for r in result.rows] == [f"s{i}" for i in range(5)]
    for i, row in enumerate(result.rows):
        for name, values in want.items():
            assert row[name] == pytest.approx(float(values[i]), rel=1e-9, abs=1e-12)
    assert result.rows[1]["valid_fraction"] == pytest.approx(20 / 32)
    assert result.rows[0]["valid_fraction"] == 1.0
    # the mask matters: the masked item's garbage (white) would lower its PSNR
    unmasked = evaluate_model(Upsample(4, 3, True), ds, "psnr", device="cpu", nodata=False)
    assert unmasked.rows[1]["psnr"] < result.rows[1]["psnr"] - 3
    assert unmasked.rows[0]["psnr"] == result.rows[0]["psnr"]
    assert result.summary["psnr"]["n"] == 5 and math.isfinite(result.summary["psnr"]["mean"])


def test_probav_one_band_items_are_scored_repeated_to_rgb_with_the_sm_mask(tmp_path):
    root = _probav_fixture().write_probav(tmp_path / "probav")
    ds = PROBAVDataset(root, split="train", n_images=4, layout="frames")
    result = evaluate_model(Upsample(3, 1, frames_layout=True), ds, ["psnr", "cpsnr"],
                            batch_size=2, device="cpu")
    assert [r["key"] for r in result.rows] == [ds[i]["id"] for i in range(len(ds))]
    for i, row in enumerate(result.rows):
        item = ds[i]
        out = F.interpolate(item["lr"][None].mean(1), scale_factor=3, mode="bicubic",
                            align_corners=False).clamp(0, 1)
        hr, valid = item["hr"][None], torch.as_tensor(item["hr_valid"])[None]
        masked = None if bool(valid.all()) else valid
        assert row["psnr"] == pytest.approx(
            float(psnr(as_rgb(out), as_rgb(hr), valid=masked)[0]), rel=1e-9)
        assert row["cpsnr"] == pytest.approx(
            float(cpsnr(as_rgb(out), as_rgb(hr), valid=masked)[0]), rel=1e-9)
        assert row["valid_fraction"] == pytest.approx(float(valid.float().mean()))


def test_probav_test_split_has_nothing_to_score(tmp_path):
    root = _probav_fixture().write_probav(tmp_path / "probav")
    ds = PROBAVDataset(root, split="test", n_images=2, layout="frames")
    with pytest.raises(DataError, match="no 'hr'.*nothing to score"):
        evaluate_model(Upsample(3, 1, True), ds, "psnr", device="cpu")


def test_s2naip_items_are_keyed_by_image_and_tile_and_written_as_evaluate_writes(tmp_path):
    root = write_sample(tmp_path / "sample", pairs=3, n_frames=4, seed=1)
    ds = S2NAIPDataset(root, n_images=4, layout="stacked", skip_black_hr=False)
    result = evaluate_model(Upsample(4, 3, frames_layout=False), ds, "psnr,ssim",
                            batch_size=3, device="cpu", label="bicubic")
    keys = [f"{p.image_id}/{p.tile}" for p in ds.pairs]
    assert [r["key"] for r in result.rows] == keys
    paths = write_results(result, tmp_path / "out")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["key"] for r in rows] == keys and rows[0]["pred"] == "bicubic"
    assert rows[0]["target"] == "S2NAIPDataset" and float(rows[0]["psnr"]) > 10


def test_an_output_of_the_wrong_size_names_the_item():
    with pytest.raises(DataError, match=r"item s0: the model's output \[2, 3, 24, 24\] does not "
                                        r"match its HR \[2, 3, 32, 32\]"):
        evaluate_model(Upsample(3, 3, True), Contract(), "psnr", batch_size=2, device="cpu")


def test_unmasked_items_and_all_true_masks_score_alike():
    a = evaluate_model(Upsample(4, 3, True), Contract(masked=False), "psnr,ssim", device="cpu")
    ds = Contract(masked=False)
    ds.masked = True  # hr_valid given, all True
    b = evaluate_model(Upsample(4, 3, True), ds, "psnr,ssim", device="cpu")
    assert [r["psnr"] for r in a.rows] == [r["psnr"] for r in b.rows]
    assert [r["ssim"] for r in a.rows] == [r["ssim"] for r in b.rows]


class Ragged(Dataset):
    """Items of different sizes (as WorldStrat's native grids, ``lr_size=None``)."""

    sizes = (8, 6, 8, 5, 6)

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.lr = [torch.rand(2, 3, s, s, generator=g) for s in self.sizes]
        self.hr = [torch.rand(3, 4 * s, 4 * s, generator=g) for s in self.sizes]

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> dict:
        return {"lr": self.lr[i], "hr": self.hr[i], "id": f"r{i}"}


def test_items_of_different_sizes_are_run_apart_and_kept_in_order():
    # torch.stack of the batch failed with a raw RuntimeError
    together = evaluate_model(Upsample(4, 3, True), Ragged(), "psnr,ssim", batch_size=4,
                              device="cpu")
    alone = evaluate_model(Upsample(4, 3, True), Ragged(), "psnr,ssim", batch_size=1,
                           device="cpu")
    assert [r["key"] for r in together.rows] == [f"r{i}" for i in range(5)]
    assert together.rows == alone.rows


class Unreadable(Contract):
    def __getitem__(self, i: int) -> dict:
        if i == 3:
            raise DataError("/data/s3/lr.tif: not a readable GeoTIFF; download it again")
        return super().__getitem__(i)


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_item_is_the_loaders_own_one_line_error_from_workers_too(workers):
    # a worker's error came back as torch's "Caught DataError in DataLoader worker process 0.
    # Original Traceback ..." (dozens of lines on the command line)
    with pytest.raises(DataError) as caught:
        evaluate_model(Upsample(4, 3, True), Unreadable(), "psnr", batch_size=2,
                       device="cpu", num_workers=workers)
    assert str(caught.value) == "/data/s3/lr.tif: not a readable GeoTIFF; download it again"


def test_a_dataset_in_training_mode_is_refused(tmp_path):
    from zoomsr.errors import ConfigError

    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, seed=0)
    ds = S2NAIPDataset(root, n_images=2, layout="stacked", train=True)
    with pytest.raises(ConfigError, match="training mode.*train=False"):
        evaluate_model(Upsample(4, 3, False), ds, "psnr", device="cpu")


def test_valid_fraction_is_float64_as_zoomsr_evaluates_it(tmp_path):
    root = _probav_fixture().write_probav(tmp_path / "probav")
    ds = PROBAVDataset(root, split="train", bands="NIR", n_images=2, layout="frames")
    row = evaluate_model(Upsample(3, 1, True), ds, "psnr", device="cpu").rows[0]
    assert row["valid_fraction"] == 1 - 384 / 384**2  # SM conceals the first row (was float32)


class TwoBands(Contract):
    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        return {**item, "lr": item["lr"][:, :2], "hr": item["hr"][:2]}


def test_hr_of_two_bands_names_the_item_and_what_to_choose():
    with pytest.raises(DataError, match="TwoBands item s0: images of 2 channels with no R, G, "
                                        "B among them.*choose one HR band or R, G and B"):
        evaluate_model(Upsample(4, 2, True), TwoBands(), "psnr", device="cpu")


def test_as_rgb_takes_the_channels_named_r_g_b_or_repeats_one_band():
    from zoomsr.errors import InputError

    x = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    assert as_rgb(x, (3, 2, 1))[0, :, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert as_rgb(x)[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0]  # the default: the first three
    assert as_rgb(x[:, 1:2], None).shape == (1, 3, 2, 2)  # one band, repeated
    for rgb in (None, (0, 1, 4)):
        with pytest.raises(InputError, match="4 channels with no R, G, B among them"):
            as_rgb(x, rgb)


class Reordered(torch.nn.Module):
    """``model``'s output channels taken in the order ``picks``."""

    def __init__(self, model: torch.nn.Module, picks: list[int]) -> None:
        super().__init__()
        self.model, self.picks = model, picks

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.model(lr)[:, self.picks]


def test_worldstrat_hr_bands_in_any_order_are_scored_on_their_r_g_b(tmp_path):
    """hr_bands NIR, B, G, R: the metrics take R, G, B wherever they are (they took the first
    three, NIR, B, G, as R, G, B): the same scores as R, G, B, NIR with the model's outputs in
    that order. Bands without all of R, G, B are refused before the model runs."""
    from zoomsr.data import WorldStratDataset
    from zoomsr.errors import ConfigError

    fx = fixture_module("worldstrat_fixture")
    root = fx.write_worldstrat(tmp_path / "ws", [fx.FakeAOI("A1", "train"),
                                                 fx.FakeAOI("A2", "train")])
    opts = {"hr_kind": "rgbn", "lr_bands": "B04,B03,B02,B08", "lr_size": 8, "n_images": 2}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 4, 3, padding=1),
                                torch.nn.Upsample(scale_factor=4), torch.nn.Sigmoid())
    metrics = "psnr,ssim,cpsnr"
    straight = evaluate_model(model, WorldStratDataset(root, hr_bands="R,G,B,NIR", **opts),
                              metrics, device="cpu")
    ds = WorldStratDataset(root, hr_bands="NIR,B,G,R", **opts)
    assert ds.hr_rgb == (3, 2, 1)
    turned = evaluate_model(Reordered(model, [3, 2, 1, 0]), ds, metrics, device="cpu")
    for a, b in zip(straight.rows, turned.rows, strict=True):
        for name in ("psnr", "ssim", "cpsnr"):
            assert b[name] == pytest.approx(a[name], rel=1e-6), name
    # the first three as RGB (the old scoring) differ: the test can tell
    item = ds[0]
    with torch.no_grad():
        out = Reordered(model, [3, 2, 1, 0])(item["lr"][None]).clamp(0, 1)
    old = float(psnr(out[:, :3], item["hr"][None, :3])[0])
    assert old != pytest.approx(turned.rows[0]["psnr"], rel=1e-3)
    no_blue = WorldStratDataset(root, hr_bands="NIR,R,G", **opts)
    calls = Upsample(4, 4, False)
    with pytest.raises(ConfigError, match=r"WorldStratDataset: its HR bands \(NIR, R, G\) hold "
                                          r"no R, G and B"):
        evaluate_model(calls, no_blue, "psnr", device="cpu")
    assert calls.calls == 0


def test_no_metric_is_refused():
    from zoomsr.errors import InputError

    with pytest.raises(InputError, match="no metrics"):
        evaluate_model(Upsample(4, 3, True), Contract(), {}, device="cpu")


@pytest.mark.parametrize(
    ("name", "config", "layout", "n_images", "message"),
    [
        ("highresnet", {"in_channels": 1}, "frames", 2,
         r"takes 1 input channel\(s\) per frame; S2NAIPDataset items have 3 per frame: open it "
         r"with the bands the model was trained on"),
        ("srcnn", {"in_channels": 3, "revisits": 4}, "frames", 2,
         r"takes 4 frames \(SRCNN's revisits\); S2NAIPDataset items have 2: open it with "
         r"n_images=4"),
        ("rrdbnet", {"num_in_ch": 12}, "stacked", 2,
         r"takes 12 input channels \(frames x channels\); S2NAIPDataset items have 6 \(2 "
         r"frame\(s\) x 3 channel\(s\)\): open it with n_images=4"),
        ("rrdbnet", {"num_in_ch": 8}, "stacked", 2,
         r"8 is no multiple of 3: open it with the bands"),
        ("rrdbnet", {"num_in_ch": 6}, "frames", 2, r"open it with layout='stacked'"),
    ],
)
def test_a_zoomsr_model_that_cannot_take_the_items_is_refused_before_it_runs(
        tmp_path, name, config, layout, n_images, message):
    from zoomsr.errors import ConfigError
    from zoomsr.models import create_model

    small = {"highresnet": {"hidden_channels": 16}, "srcnn": {"hidden_channels": 16},
             "rrdbnet": {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}}[name]
    model = create_model(name, **small, **config)
    root = write_sample(tmp_path / "s", pairs=2, n_frames=2, seed=0)
    ds = S2NAIPDataset(root, n_images=n_images, layout=layout, skip_black_hr=False)
    with pytest.raises(ConfigError, match=message):
        evaluate_model(model, ds, "psnr", device="cpu")


def test_a_basicsr_rrdbnet_file_is_scored_with_its_config_read_from_its_tensors(tmp_path):
    """evaluate-model rebuilds a BasicSR/Lightning RRDBNet as infer does (it built the
    defaults, 64 features and 23 blocks, and failed on their shape conflicts)."""
    from zoomsr.errors import ConfigError, ZoomsrWarning
    from zoomsr.evaluation.model_eval import load_scoring_model
    from zoomsr.models import create_model

    torch.manual_seed(0)
    net = create_model("rrdbnet", num_in_ch=6, num_feat=8, num_block=1, num_grow_ch=4).eval()
    torch.save({"params_ema": net.state_dict()}, tmp_path / "net_g.pth")
    x = torch.rand(1, 6, 8, 8)
    for model in (None, "rrdbnet"):
        with pytest.warns(ZoomsrWarning, match=r"net_g.pth records no model: read from its "
                                               r"tensors as rrdbnet num_in_ch=6 .*scale=4"):
            scoring = load_scoring_model(tmp_path / "net_g.pth", model=model)
        assert scoring.name == "rrdbnet" and scoring.module.config == net.config
        with torch.no_grad():
            torch.testing.assert_close(scoring.module(x), net(x))
    with pytest.raises(ConfigError, match=r"--model srcnn: .*leave --model out"):
        from zoomsr.models import save_checkpoint

        load_scoring_model(save_checkpoint(net, tmp_path / "z.pth"), model="srcnn")
