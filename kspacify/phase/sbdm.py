"""`sbdm`: phase drawn by the conditional score-based diffusion model (kspacify.sbdm).

The checkpoint `sbdm-<preset>.safetensors` (+ its `.json` model card) is looked for in
$KSPACIFY_WEIGHTS, then the package's `kspacify/weights/`; `checkpoint=PATH` overrides. Its sha256 is
checked against the card on load.

Low-resolution diffusion. The network diffuses at its trained size, `config.image_size` of the
checkpoint (the "diffusion size"); a larger slice is area-averaged down to that grid, the sampled
unit phasor is bilinearly upsampled (interpolating the phasor, not the phase, is wrap-safe) and its
angle read with atan2. That keeps the smooth part of the phase (B0 and coil fields, the bulk of it)
at a fraction of the cost: a network evaluation costs ~ pixels, 16x less at 64x64 than at 256x256.
What the coarse grid cannot carry is pixel-scale phase noise, and that is exactly known: a pixel is
signal + complex Gaussian noise, so where the magnitude is at the noise floor the phase is uniform
noise, and in tissue it scatters by ~sigma / magnitude. With `background=noise` (the default when the
grid is coarser than the slice) the output is the angle of

    magnitude x tissue_weight x exp(i phi_sampled) + sigma (n1 + i n2),

with sigma (measured in the tissue, `physics.tissue_noise`, times `grid.residual_noise_gain`: the
share of the noise that a coarser grid's area-averaged phase does not already carry; all of it on a
grid no coarser than the slice, where `background=noise` is a choice over the network's own) and
the soft tissue weight estimated as the `physics` method does (`physics.with_measurement_noise`
applies it), n1, n2 ~ N(0, 1) from the passed generator: background pixels get uniform phase drawn
directly rather than a blurred, upsampled imitation of it. The receiver options
(`physics.ReceiverNoise`: noise_gain, noise_correlation, noise_level, signal_amplitude) shape that
noise exactly as they do for `physics`.

Training at a low resolution must build its pairs the way `sbdm.grid.to_diffusion_grid` does (magnitude
area-averaged; target phasor = area average of magnitude x exp(i phase), normalized to unit length,
so tissue rather than background noise sets the coarse phase).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
DEFAULT_SAMPLER = "dpm2m"
DEFAULT_STEPS = {"dpm2m": 25}  # measured: see docs/performance.md; other samplers use their own default
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class SbdmOptions(ReceiverNoise):
    """The receiver options (`physics.ReceiverNoise`) apply with background=noise."""

    method: ClassVar[str] = "sbdm phase"

    checkpoint: Path | None = field(default=None, metadata={"help": "an sbdm-*.safetensors file (default: the bundled one)"})
    preset: str = field(default=DEFAULT_PRESET, metadata={"help": "which bundled sbdm-<preset> to look for"})
    sampler: str = field(default=DEFAULT_SAMPLER, metadata={"help": "a sampler of kspacify.sbdm.SAMPLERS (pc, heun, dpm2m)"})
    steps: int | None = field(default=None, metadata={"help": "sampler steps (default: 25 for dpm2m, the sampler's own otherwise)"})
    snr: float | None = field(default=None, metadata={"help": "corrector signal-to-noise ratio of the pc sampler"})
    churn: float | None = field(default=None, metadata={"help": "EDM stochastic churn S_churn of the heun sampler (0: deterministic)"})
    churn_min: float | None = field(default=None, metadata={"help": "churn only at noise levels sigma >= this (heun sampler)"})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(default="auto", metadata={"help": "autocast dtype on CUDA"})
    background: Literal["auto", "noise", "model"] = field(default="auto", metadata={"help": "noise floor from the noise model, or the network's"})
    channels_last: bool = field(default=True, metadata={"help": "NHWC memory layout"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the network"})

    def __post_init__(self) -> None:
        super().__post_init__()
        from kspacify.sbdm.samplers import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise ValueError(f"sbdm phase: unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        if self.snr is not None and self.sampler != "pc":
            raise ValueError(f"sbdm phase: snr is an option of the pc sampler, not {self.sampler}")
        for name in ("churn", "churn_min"):
            value = getattr(self, name)
            if value is not None and self.sampler != "heun":
                raise ValueError(f"sbdm phase: {name} is an option of the heun sampler, not {self.sampler}")
            if value is not None and value < 0:
                raise ValueError(f"sbdm phase: {name} must be >= 0, got {value}")
        if self.steps is not None and not 2 <= self.steps <= 100_000:
            raise ValueError(f"sbdm phase: steps must be at least 2 (and at most 100000), got {self.steps}")

    def sampler_options(self) -> dict[str, float]:
        """The options this method passes on to its sampler's constructor (those that are set)."""
        return {name: value for name in ("snr", "churn", "churn_min") if (value := getattr(self, name)) is not None}


def find_checkpoint(preset: str = DEFAULT_PRESET) -> Path | None:
    """The bundled or user checkpoint `sbdm-<preset>.safetensors`, or None."""
    return weights.find_weights(f"sbdm-{preset}")


class SbdmPhase:
    """A loaded checkpoint plus sampling options; `synthesize` draws one phase map per slice."""

    name = "sbdm"

    def __init__(self, options: SbdmOptions | None = None, device: str = "auto") -> None:
        import torch

        from kspacify.device import resolve_device
        from kspacify.sbdm import load_checkpoint, load_sde, make_sampler
        from kspacify.sbdm.checkpoint import FALLBACK

        options = options if options is not None else SbdmOptions()
        sampler = options.sampler
        self.sampler = make_sampler(sampler, **options.sampler_options())
        self.steps = options.steps if options.steps is not None else DEFAULT_STEPS.get(sampler, self.sampler.default_steps)
        self.background = options.background
        self.receiver = options.receiver()
        self.device = resolve_device(device)
        precision = options.precision
        if precision == "auto":
            cuda = self.device.type == "cuda"
            precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
        if precision != "fp32" and self.device.type != "cuda":
            raise OptionError(f"sbdm phase: precision {precision} is for CUDA only; {self.device} runs fp32")
        self.precision = precision
        self.autocast_dtype = getattr(torch, PRECISIONS[precision]) if PRECISIONS[precision] else None  # type: ignore[arg-type]

        checkpoint = options.checkpoint
        if checkpoint is None:
            checkpoint = find_checkpoint(options.preset)
            if checkpoint is None:
                places = ", ".join(str(d) for d in weights.weights_dirs())
                raise OptionError(
                    f"sbdm phase: no checkpoint sbdm-{options.preset}.safetensors in {places} (set ${weights.WEIGHTS_ENV} or "
                    f"--phase-opt checkpoint=PATH); {FALLBACK}"
                )
        self.path = Path(checkpoint)
        model, self.card = load_checkpoint(self.path, device=self.device)
        self.sde = load_sde(self.card)
        self.config = model.config
        self.channels_last = options.channels_last
        self.compiled = options.compile
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = torch.compile(model) if self.compiled else model

    def settings(self) -> dict[str, Any]:
        return {
            "checkpoint": self.path.name,
            "checkpoint_sha256": self.card["sha256"],
            "config": self.config.to_dict(),
            "sde": self.sde.to_dict(),
            "diffusion_size": self.config.image_size,
            **self.sampler.settings(),
            "steps": self.steps,
            "nfe": self.sampler.nfe_for(self.steps),
            "background": self.background,
            "receiver_noise": as_dict(self.receiver),
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compiled,
        }

    def synthesize(self, magnitude: np.ndarray, rng: np.random.Generator, acquisition: Acquisition = UNKNOWN) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from kspacify.sbdm import phasor_to_phase
        from kspacify.sbdm.conditioning import condition, encode
        from kspacify.sbdm.grid import diffusion_grid, residual_noise_gain, to_diffusion_grid

        magnitude = np.nan_to_num(np.maximum(np.asarray(magnitude, dtype=np.float32), 0.0))
        if magnitude.ndim != 3:
            raise ValueError(f"sbdm phase: magnitude must be (batch, H, W), got shape {magnitude.shape}")
        batch, height, width = magnitude.shape
        grid = diffusion_grid(height, width, self.config.image_size, self.config.min_multiple)
        generator = torch.Generator(device=self.device).manual_seed(int(rng.integers(0, 2**63 - 1)))
        full = torch.from_numpy(magnitude)[:, None].to(self.device)
        coarse, _ = to_diffusion_grid(full, grid)
        features = torch.from_numpy(encode(acquisition)).to(self.device).expand(batch, -1)
        coarse = condition(coarse, features, self.config.cond_channels)
        if self.channels_last:
            coarse = coarse.contiguous(memory_format=torch.channels_last)
        phasor = self.sampler.sample(
            self.model, coarse, self.sde, self.steps, generator, dtype=self.autocast_dtype
        )
        if grid != (height, width):
            phasor = F.interpolate(phasor, size=(height, width), mode="bilinear", align_corners=False)
        phase = phasor_to_phase(phasor).cpu().numpy()
        background = self.background if self.background != "auto" else ("model" if grid == (height, width) else "noise")
        if background == "noise":
            gain = self.receiver.noise_gain * residual_noise_gain(grid, height, width)
            phase = with_measurement_noise(magnitude, phase, rng, replace(self.receiver, noise_gain=gain))
        return wrap(phase)


def usable(device: str, acquisition: Acquisition = UNKNOWN) -> tuple[bool, str]:
    """For `auto`: a checkpoint must be found (checked without importing torch), a GPU present or
    the card's measured CPU speed acceptable (`weights.cpu_speed_gate`), and the card must show it
    more realistic than `physics` on volumes of this acquisition's family (`weights.realism_gate`)."""
    path = find_checkpoint()
    if path is None:
        return False, f"no checkpoint in kspacify/weights/ (sbdm-{DEFAULT_PRESET}.safetensors; or set ${weights.WEIGHTS_ENV})"
    from kspacify.device import is_accelerator, resolve_device

    try:
        resolved = resolve_device(device)
    except ValueError as error:
        return False, str(error)
    speed = ""
    if not is_accelerator(resolved):
        fast, speed = weights.cpu_speed_gate(path, "sbdm")
        if not fast:
            return False, speed
    good, why = weights.realism_gate(path, "sbdm", acquisition.family.value)
    return (True, f"checkpoint {path.name} on {resolved}{f' ({speed})' if speed else ''}: {why}") if good else (False, why)


METHOD = MethodSpec(
    name="sbdm",
    summary="conditional score-based diffusion model (learned; checkpoint in kspacify/weights/)",
    options=SbdmOptions,
    build=lambda options, device: SbdmPhase(options, device),
    auto_rank=10,
    usable=usable,
)
