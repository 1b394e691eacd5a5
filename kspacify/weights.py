"""Where bundled and user checkpoints are found: $KSPACIFY_WEIGHTS, then `weights/` beside the
installed package, then `weights/` at the repository root (an editable install)."""

from __future__ import annotations

import json
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


def realism_gate(path: Path, method: str) -> tuple[bool, str]:
    """`--phase auto`'s quality bar for a learned checkpoint: its model card must record realism
    measures (`quality.realism`, lower is closer to real phase) of the model and of `physics` on the
    same real-phase slices, with the model closer on every measure. Why: a model trained on
    physics-model phase can at best imitate `physics`, which is faster, so without that evidence
    `auto` keeps `physics`; `--phase METHOD` still uses the checkpoint."""
    card = path.with_suffix(".json")
    try:
        realism = json.loads(card.read_text(encoding="utf-8"))["quality"]["realism"]
        model, physics = dict(realism["model"]), dict(realism["physics"])
        if not physics:
            raise ValueError("no measures")
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"{card.name} records no realism measured against physics; use --phase {method} to force it"
    worse = [f"{m} {model.get(m)} vs {v:.3g}" for m, v in physics.items() if not float(model.get(m, float("inf"))) < v]
    if worse:
        return False, f"{path.name} is less realistic than physics ({'; '.join(worse)}); use --phase {method} to force it"
    return True, f"{path.name} is more realistic than physics on every measure"
