"""Score-network checkpoints: safetensors weights + a JSON model card, never pickle.

    save_checkpoint("sbdm.safetensors", model, config, extra_metadata, ema=ema, sde=sde)
    model, card = load_checkpoint("sbdm.safetensors")   # EMA weights, eval mode, sha256 verified

The .safetensors file holds two full state dicts, `model.<name>` (the raw training weights) and
`ema.<name>` (the exponential moving average, the weights used for sampling; a copy of the raw
weights when no EMA is given), and string metadata (format, config, SDE). Beside it, `<stem>.json` is
the model card: format, config, SDE, the data representation, the sha256 and size of the
.safetensors file, parameter count, and the caller's `extra_metadata` merged in over placeholder
sections `data`, `training` (steps, ...) and `quality` (measured metrics, None until filled).

`load_checkpoint` checks, in order: both files exist, the card is valid JSON of this format, the
file's sha256 equals the card's, safetensors can parse it, card and file agree on the config, and
the tensor names and shapes match the network the config builds. Any failure raises
`CheckpointError` naming the problem and the fallback phase methods.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch

from kspacify.atomic import atomic_path, write_json
from kspacify.errors import UsageError
from kspacify.sbdm.network import ScoreNet, ScoreNetConfig
from kspacify.sbdm.sde import VESDE
from kspacify.training.checkpoint import card_path, sha256_file
from kspacify.training.checkpoint import deep_merge as _deep_merge
from kspacify.training.ema import EMA

__all__ = ["EMA", "CheckpointError", "card_path", "load_checkpoint", "load_sde", "save_checkpoint", "sha256_file"]

FORMAT = "kspacify-sbdm"
FORMAT_VERSION = 1
FALLBACK = "use --phase physics or --phase smooth instead"
REPRESENTATION = (
    "unit phasor x = (cos phi, sin phi), 2 channels, diffused with a VE SDE, conditioned on the "
    "magnitude (1 channel) normalized so the volume's 99.5th percentile is 1; phase = atan2(x1, x0)"
)


class CheckpointError(UsageError):
    """A score-network checkpoint is missing, corrupt or does not match its model card."""


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"SBDM checkpoint {path}: {problem}; {FALLBACK}")


def _tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    path: str | Path,
    model: ScoreNet,
    config: ScoreNetConfig | None = None,
    extra_metadata: dict[str, Any] | None = None,
    *,
    ema: EMA | None = None,
    sde: VESDE | None = None,
) -> dict[str, Any]:
    """Write `path` (.safetensors) and its model card `path.json`; returns the card.

    `extra_metadata` is merged (recursively) into the card, e.g. {"data": {...}, "training":
    {"steps": 120000}, "quality": {"val_dsm_loss": 0.31}}."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint: the weights file must end in .safetensors, got {path}")
    config = model.config if config is None else config
    if config != model.config:
        raise ValueError("save_checkpoint: config does not match the model's config")
    sde = VESDE() if sde is None else sde
    raw = model.state_dict()
    averaged = ema.state_dict() if ema is not None else raw
    tensors = {**_tensors("model", raw), **_tensors("ema", averaged)}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "sde": json.dumps(sde.to_dict(), sort_keys=True),
        "sampling_weights": "ema",
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)

    card: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": "NCSN++-style conditional U-Net (kspacify.sbdm.network.ScoreNet)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict(),
        "sde": sde.to_dict(),
        "representation": REPRESENTATION,
        "sampling_weights": "ema",
        "ema": {"decay": ema.decay, "updates": ema.num_updates} if ema is not None else None,
        "data": {"description": None, "slices": None, "splits": None},
        "training": {"steps": None, "batch_size": None, "learning_rate": None},
        "quality": {"val_dsm_loss": None, "phase_error_deg": None, "notes": None},
    }
    card = _deep_merge(card, extra_metadata or {})
    write_json(card_path(path), card, allow_nan=True)
    return card


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", weights: str = "ema"
) -> tuple[ScoreNet, dict[str, Any]]:
    """Load a checkpoint written by `save_checkpoint` (path to the .safetensors or its .json card).

    Returns (model in eval mode on `device`, model card). `weights`: "ema" (default, for sampling)
    or "model" (the raw training weights). Raises CheckpointError on any problem."""
    from safetensors import SafetensorError, safe_open

    if weights not in ("ema", "model"):
        raise ValueError(f"load_checkpoint: weights must be 'ema' or 'model', got {weights!r}")
    path = Path(path)
    card_file = path if path.suffix == ".json" else card_path(path)
    if not card_file.is_file():
        if path.suffix == ".json" or not path.exists():
            raise _fail(path, "file not found")
        raise _fail(path, f"model card {card_file.name} not found beside the weights")
    try:
        card = json.loads(card_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(card_file, f"model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise _fail(card_file, f"model card is not a {FORMAT} card")
    if card.get("format_version") != FORMAT_VERSION:
        raise _fail(card_file, f"model card format_version {card.get('format_version')!r} is not {FORMAT_VERSION}")
    weights_file = card_file.with_name(str(card.get("weights_file", ""))) if path.suffix == ".json" else path
    if not weights_file.is_file():
        raise _fail(weights_file, "weights file not found")
    expected = card.get("sha256")
    actual = sha256_file(weights_file)
    if not isinstance(expected, str) or expected.lower() != actual:
        raise _fail(
            weights_file,
            f"sha256 mismatch: file is {actual}, model card says {expected} (file corrupt, truncated or replaced)",
        )
    try:
        config = ScoreNetConfig.from_dict(card["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(card_file, f"model card has no valid config ({exc})") from None
    try:
        with safe_open(str(weights_file), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            prefix = weights + "."
            state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError, ValueError) as exc:
        raise _fail(weights_file, f"not a readable safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise _fail(weights_file, f"safetensors metadata does not say format {FORMAT}")
    try:
        file_config = ScoreNetConfig.from_dict(json.loads(metadata.get("config", "")))
    except (TypeError, ValueError) as exc:
        raise _fail(weights_file, f"safetensors metadata has no valid config ({exc})") from None
    if file_config != config:
        raise _fail(weights_file, "config in the weights file differs from the model card's")

    model = ScoreNet(config, seed=0)
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got_shapes = {k: tuple(v.shape) for k, v in state.items()}
    if expected_shapes != got_shapes:
        missing = sorted(set(expected_shapes) - set(got_shapes))
        unexpected = sorted(set(got_shapes) - set(expected_shapes))
        wrong = sorted(k for k in set(expected_shapes) & set(got_shapes) if expected_shapes[k] != got_shapes[k])
        raise _fail(
            weights_file,
            f"{weights} weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong[:3]})",
        )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    if "sde" not in card:
        try:
            card["sde"] = json.loads(metadata.get("sde", "{}"))
        except ValueError:
            pass
    return model, card


def load_sde(card: dict[str, Any]) -> VESDE:
    """The SDE a checkpoint was trained with (defaults where the card has none)."""
    return VESDE.from_dict(card.get("sde") or {})
