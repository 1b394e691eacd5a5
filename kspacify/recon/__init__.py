"""Accelerated-MRI reconstruction: undersampling masks, a single-coil VarNet, training losses.

Masks are numpy-only and imported eagerly; the torch parts load on first use, so code that only
needs masks (e.g. the CLI writing k-space) does not pay for importing torch.
"""

from __future__ import annotations

from typing import Any

from kspacify.recon.masks import (
    MASKS,
    EquispacedMask,
    MaskFunction,
    RandomMask,
    UndersamplingMask,
    apply_mask,
    make_mask,
    sample_mask,
)

_LAZY = {
    "VarNet": "kspacify.recon.varnet",
    "VarNetConfig": "kspacify.recon.varnet",
    "VARNET_PRESETS": "kspacify.recon.varnet",
    "SSIMLoss": "kspacify.recon.losses",
}

__all__ = [
    "MASKS",
    "EquispacedMask",
    "MaskFunction",
    "RandomMask",
    "UndersamplingMask",
    "apply_mask",
    "make_mask",
    "sample_mask",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kspacify.recon' has no attribute {name!r}")
