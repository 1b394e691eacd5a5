"""Where learned phase methods run: `--device auto` picks CUDA, then Apple MPS, then the CPU.

torch is imported inside the functions, so importing this module costs nothing for model-free
methods.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kspacify.errors import UsageError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device `name` stands for; an explicit device that is not present is a UsageError,
    so a typo or a missing GPU fails before any work instead of silently running on the CPU."""
    import torch

    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise UsageError("--device mps: Apple MPS is not available here; use --device cpu or auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UsageError(f"unknown device {name!r}; choose {DEVICE_CHOICES}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if index >= count:
        raise UsageError(f"--device {name}: {count} CUDA device(s) available; use --device cpu or auto")
    return torch.device(name)


def is_accelerator(device: torch.device) -> bool:
    """True for a GPU (CUDA or MPS)."""
    return device.type in ("cuda", "mps")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
