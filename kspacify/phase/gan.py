"""`gan`: phase from the pix2pix GAN (kspacify.gan), one generator evaluation per slice.

The fast learned method: `auto` considers it after `sbdm` and before `physics`, for the sequence
families where its card shows it more realistic than `physics`. The checkpoint
`gan-<preset>.safetensors` (+ `.json` model card, sha256-checked on load) is looked for where the
SBDM's is (`kspacify.weights.weights_dirs`: $KSPACIFY_WEIGHTS, then the package's
`kspacify/weights/`); `checkpoint=PATH` overrides.

The generator was trained on 256x256 slices (the card's `data.size`); other sizes are
area-resampled to it and the unit phasor is bilinearly resampled back (wrap-safe), then phase =
atan2. It learned phase up to a global constant (see `kspacify.gan.train`), so a uniform random
global phase is added per slice (`offset=random`, from the passed generator). A generator with
noise inputs (card `config.generator.noise_channels` > 0; absent in older cards: none) gets its
noise from the passed generator too, so each seed draws another phase map and the same seed the
same one. With
`background=noise` (default) the output is the angle of magnitude x tissue weight x exp(i phase) +
sigma (n1 + i n2) with sigma and the weight as `physics` estimates them: the noise floor gets
uniform noise phase as in real images, which a deterministic network cannot draw; the receiver
options (`physics.ReceiverNoise`) shape that noise exactly as they do for `physics`.
The magnitude is not touched: only phase is returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from kspacify import weights
from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.errors import OptionError
from kspacify.options import as_dict
from kspacify.phase.base import MethodSpec, wrap
from kspacify.phase.physics import ReceiverNoise, with_measurement_noise

DEFAULT_PRESET = "small"
FALLBACK = "use --phase physics or --phase smooth instead"


@dataclass(frozen=True)
class GanOptions(ReceiverNoise):
    """The receiver options (`physics.ReceiverNoise`) apply with background=noise."""

    method: ClassVar[str] = "gan phase"

    checkpoint: Path | None = field(default=None, metadata={"help": "a gan-*.safetensors file (default: the bundled one)"})
    preset: str = field(default=DEFAULT_PRESET, metadata={"help": "which bundled gan-<preset> to look for"})
    background: Literal["noise", "model"] = field(default="noise", metadata={"help": "noise floor: drawn from the noise model, or the network's"})
    offset: Literal["random", "none"] = field(default="random", metadata={"help": "uniform random global phase per slice"})
    batch_size: int = field(default=16, metadata={"help": "slices per network evaluation"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.batch_size <= 4096:
            raise ValueError(f"gan phase: batch_size must be in [1, 4096], got {self.batch_size}")


def find_checkpoint(preset: str = DEFAULT_PRESET) -> Path | None:
    """The bundled or user checkpoint `gan-<preset>.safetensors`, or None."""
    return weights.find_weights(f"gan-{preset}")


def load_generator(path: str | os.PathLike[str], device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """(generator in eval mode, model card) of an exported GAN; ValueError naming the fallback if the
    file is missing, corrupt (sha256), or does not match its card's config."""
    from kspacify.gan.network import Generator, GeneratorConfig
    from kspacify.training import PairError, load_weights

    try:
        tensors, card = load_weights(path)  # type: ignore[arg-type]
    except PairError as error:
        raise OptionError(f"gan phase: checkpoint unusable: {error}; {FALLBACK}") from None
    try:
        model = Generator(GeneratorConfig(**card["config"]["generator"]))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise OptionError(f"gan phase: {path} does not match its model card ({error}); {FALLBACK}") from None
    return model.to(device).eval(), card


class GanPhase:
    """A loaded generator; `synthesize` runs it once per slice (batched)."""

    name = "gan"

    def __init__(self, options: GanOptions | None = None, device: str = "auto") -> None:
        import torch

        from kspacify.device import resolve_device

        options = options if options is not None else GanOptions()
        self.background, self.offset, self.batch_size = options.background, options.offset, options.batch_size
        self.receiver = options.receiver()
        self.device = resolve_device(device)
        checkpoint = options.checkpoint
        if checkpoint is None:
            checkpoint = find_checkpoint(options.preset)
            if checkpoint is None:
                places = ", ".join(str(d) for d in weights.weights_dirs())
                raise OptionError(f"gan phase: no checkpoint gan-{options.preset}.safetensors in {places} (set "
                                  f"${weights.WEIGHTS_ENV} or --phase-opt checkpoint=PATH); {FALLBACK}")  # fmt: skip
        self.path = Path(checkpoint)
        model, self.card = load_generator(self.path, self.device)
        # NHWC: 4x faster generator on the CPU here (its transposed convolutions), measured
        self.model = model.to(memory_format=torch.channels_last)
        self.size = int(self.card.get("data", {}).get("size", 256))

    def settings(self) -> dict[str, Any]:
        return {
            "checkpoint": self.path.name,
            "checkpoint_sha256": self.card["sha256"],
            "generator": self.card["config"]["generator"],
            "size": self.size,
            "background": self.background,
            "receiver_noise": as_dict(self.receiver),
            "offset": self.offset,
            "device": str(self.device),
        }

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from kspacify.gan.network import sample_noise
        from kspacify.sbdm import phasor_to_phase

        magnitude = np.nan_to_num(np.maximum(np.asarray(magnitude, dtype=np.float32), 0.0))
        if magnitude.ndim != 3:
            raise ValueError(f"gan phase: magnitude must be (batch, H, W), got shape {magnitude.shape}")
        batch, height, width = magnitude.shape
        grid = (self.size, self.size)
        out = []
        with torch.inference_mode():
            for start in range(0, batch, self.batch_size):
                x = torch.from_numpy(magnitude[start : start + self.batch_size])[:, None].to(self.device)
                if (height, width) != grid:
                    x = F.interpolate(x, size=grid, mode="area" if height >= self.size else "bilinear")
                noise = sample_noise(self.model.config, x, rng)
                phasor = self.model(x.contiguous(memory_format=torch.channels_last), noise).float()
                if (height, width) != grid:
                    phasor = F.interpolate(phasor, size=(height, width), mode="bilinear", align_corners=False)
                out.append(phasor_to_phase(phasor).cpu().numpy())
        phase = np.concatenate(out) if out else np.zeros_like(magnitude)
        if self.offset == "random":
            phase = phase + rng.uniform(-np.pi, np.pi, size=(batch, 1, 1)).astype(np.float32)
        if self.background == "noise":
            phase = with_measurement_noise(magnitude, phase, rng, self.receiver)
        return wrap(phase)


def usable(device: str, acquisition: Acquisition = UNKNOWN) -> tuple[bool, str]:
    """For `auto`: usable wherever its checkpoint is found (CPU too: one network evaluation per slice)
    and its card shows it more realistic than `physics` (`weights.realism_gate`)."""
    path = find_checkpoint()
    if path is None:
        return False, f"no checkpoint in kspacify/weights/ (gan-{DEFAULT_PRESET}.safetensors; or set ${weights.WEIGHTS_ENV})"
    good, why = weights.realism_gate(path, "gan", acquisition.family.value)
    return (True, f"checkpoint {path.name} (one network evaluation per slice): {why}") if good else (False, why)


METHOD = MethodSpec(
    name="gan",
    summary="pix2pix conditional GAN (learned; one network evaluation per slice; checkpoint in kspacify/weights/)",
    options=GanOptions,
    build=lambda options, device: GanPhase(options, device),
    auto_rank=30,
    usable=usable,
)
