"""Tiny RRDBNet checkpoints for the weights tests, and registry entries narrowed to them."""

from __future__ import annotations

#: A tiny RRDBNet config: registry entries are narrowed to it in the tests, so that the files
#: saved into the cache match their entry's architecture without weighing 67 MB each.
TINY_RRDBNET = {"num_feat": 4, "num_block": 1, "num_grow_ch": 2}


def tiny_rrdbnet_bytes(tag: int = 0, num_in_ch: int = 24, **config: int) -> bytes:
    """A BasicSR-style ``torch.save`` file (``params_ema``) of a tiny RRDBNet, different for
    each ``tag`` (the seed of its weights)."""
    import io

    import torch

    from zoomsr.models import create_model

    torch.manual_seed(tag)
    model = create_model("rrdbnet", num_in_ch=num_in_ch, **{**TINY_RRDBNET, **config})
    buffer = io.BytesIO()
    torch.save({"params_ema": model.state_dict()}, buffer)
    return buffer.getvalue()


def narrow_to_tiny(monkeypatch, name: str) -> None:
    """Make the registry entry ``name`` (an RRDBNet) expect :data:`TINY_RRDBNET`."""
    import dataclasses

    from zoomsr.weights import registry

    entry = registry.get_entry(name)
    monkeypatch.setitem(registry.REGISTRY, name, dataclasses.replace(
        entry, config={**entry.config, **TINY_RRDBNET}))
