"""The training scaffold every trainer uses (VarNet now, SBDM and GAN on top of it).

* `loop`        -- `fit(task, LoopConfig)`: the one loop (bounds, resumable checkpoints, DDP, AMP,
                   logging, validation, export); a trainer subclasses `TrainTask` and returns `Part`s;
* `checkpoint`  -- safetensors + JSON pairs (no pickle), model cards, `load_weights`;
* `ema`         -- `EMA` of the weights;
* `distributed` -- `World` (torchrun's RANK/LOCAL_RANK/WORLD_SIZE) and `pick_device`.
"""

from kspacify.training.checkpoint import PairError, card_path, export_weights, load_weights, sha256_file
from kspacify.training.distributed import World, pick_device
from kspacify.training.ema import EMA
from kspacify.training.loop import (
    LoopConfig,
    Part,
    ResumeError,
    StepContext,
    TrainResult,
    TrainTask,
    fit,
    linear_warmup,
)

__all__ = [
    "EMA",
    "LoopConfig",
    "PairError",
    "Part",
    "ResumeError",
    "StepContext",
    "TrainResult",
    "TrainTask",
    "World",
    "card_path",
    "export_weights",
    "fit",
    "linear_warmup",
    "load_weights",
    "pick_device",
    "sha256_file",
]
