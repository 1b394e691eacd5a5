"""Where bundled and user checkpoints are found: $KSPACIFY_WEIGHTS, then `weights/` beside the
installed package, then `weights/` at the repository root (an editable install)."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ENV = "KSPACIFY_WEIGHTS"


def weights_dirs() -> list[Path]:
    """Where checkpoints are looked for, in order."""
    package = Path(__file__).resolve().parent
    env = os.environ.get(WEIGHTS_ENV)
    return ([Path(env)] if env else []) + [package / "weights", package.parent / "weights"]


def find_weights(name: str) -> Path | None:
    """The first `<name>.safetensors` in `weights_dirs()`, or None."""
    for directory in weights_dirs():
        path = directory / f"{name}.safetensors"
        if path.is_file():
            return path
    return None
