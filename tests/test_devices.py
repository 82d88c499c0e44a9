"""zoomsr.devices.resolve_device: the one device check of every command and metric."""

import pytest
import torch

from zoomsr.devices import resolve_device
from zoomsr.errors import InputError


def test_resolve_device_names_what_is_not_there(monkeypatch):
    """No GPU, a GPU index beyond the count, no MPS, an unknown name: one line each."""
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match=r"^device must be auto, cpu, cuda, cuda:N or mps, got "
                                         r"'gpu'$"):
        resolve_device("gpu")
    for other in ("xpu", "meta", "cpu:1", "mps:1"):  # torch names zoomsr does not run on
        with pytest.raises(InputError, match=rf"^--device must be .*, got '{other}'$"):
            resolve_device(other, option="--device")
    for name in ("mps", "mps:0"):  # the metrics, e.g. validation when training on MPS
        with pytest.raises(InputError, match=rf"^device {name}: these scores are float64, "
                                             "which MPS lacks; use cpu or cuda$"):
            resolve_device(name, mps=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"^device cuda:0: no CUDA GPU is available$"):
        resolve_device("cuda:0")
    with pytest.raises(InputError, match=r"^--device cuda:0: no CUDA GPU is available$"):
        resolve_device("cuda:0", option="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(torch.device("cuda:1")) == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"^device cuda:2: only 2 CUDA GPU\(s\)$"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"^device mps: no MPS device is available$"):
        resolve_device("mps")


@pytest.mark.parametrize("auto", ["auto", None])
def test_auto_prefers_cuda_then_mps_unless_mps_is_excluded(monkeypatch, auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device(auto) == torch.device("mps")
    # metrics: scores are float64, which MPS lacks
    assert resolve_device(auto, mps=False) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(auto) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(auto) == torch.device("cpu")


def test_metrics_use_the_same_check(monkeypatch):
    from zoomsr.metrics.lpips import LPIPS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"^device cuda: no CUDA GPU is available$"):
        LPIPS(device="cuda")
