"""Training: typed YAML configs, the S2-NAIP data module, Lightning modules (regression,
ESRGAN, SR3) and :func:`train`, which runs a config into a run folder and resumes it.

Lightning is imported when a submodule is used, not by ``import zoomsr.training.config``.
"""

from typing import TYPE_CHECKING

from zoomsr.training.config import TrainConfig, config_from_dict, dump_config, load_config

if TYPE_CHECKING:  # imported lazily below; named here for type checkers (they saw `object`)
    from zoomsr.training.run import train

__all__ = ["TrainConfig", "config_from_dict", "dump_config", "load_config", "train"]


def __getattr__(name: str) -> object:
    if name == "train":
        from zoomsr.training.run import train

        return train
    raise AttributeError(f"module 'zoomsr.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too (for ``dir()`` and tab completion)."""
    return sorted({*globals(), *__all__})
