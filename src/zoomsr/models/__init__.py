"""Super-resolution models: SRCNN, HighRes-net, ESRGAN (RRDBNet + U-Net discriminator), SR3.

Build models with :func:`create_model`; load published or zoomsr weights with
:func:`load_checkpoint`; rebuild a model saved by zoomsr with :func:`from_checkpoint`.
"""

from zoomsr.layout import channels_to_frames, frames_to_channels
from zoomsr.models.checkpoints import (
    Checkpoint,
    LoadResult,
    apply_state_dict,
    checkpoint_metadata,
    first_mismatch,
    load_checkpoint,
    match_state_dict,
    read_checkpoint,
    save_checkpoint,
)
from zoomsr.models.discriminator import UNetDiscriminatorSN
from zoomsr.models.factory import (
    MODELS,
    ModelInfo,
    config_fields,
    count_flops,
    create_model,
    default_config,
    from_checkpoint,
    infer_config,
    infer_model,
    model_class,
    model_info,
    parse_config,
)
from zoomsr.models.highresnet import HighResNet
from zoomsr.models.rrdbnet import RRDBNet
from zoomsr.models.sr3 import SR3
from zoomsr.models.srcnn import SRCNN

__all__ = [
    "MODELS",
    "SR3",
    "SRCNN",
    "Checkpoint",
    "HighResNet",
    "LoadResult",
    "ModelInfo",
    "RRDBNet",
    "UNetDiscriminatorSN",
    "apply_state_dict",
    "channels_to_frames",
    "checkpoint_metadata",
    "config_fields",
    "count_flops",
    "create_model",
    "default_config",
    "first_mismatch",
    "frames_to_channels",
    "from_checkpoint",
    "infer_config",
    "infer_model",
    "load_checkpoint",
    "match_state_dict",
    "model_class",
    "model_info",
    "parse_config",
    "read_checkpoint",
    "save_checkpoint",
]
