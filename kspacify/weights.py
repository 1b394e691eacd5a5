"""Where bundled and user checkpoints are found: $KSPACIFY_WEIGHTS, then `kspacify/weights/` (the
bundled ones, which a wheel and a non-editable install carry as package data)."""

from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHTS_ENV = "KSPACIFY_WEIGHTS"
BUNDLED = Path(__file__).resolve().parent / "weights"


def weights_dirs() -> list[Path]:
    """Where checkpoints are looked for, in order."""
    env = os.environ.get(WEIGHTS_ENV)
    return ([Path(env)] if env else []) + [BUNDLED]


def find_weights(name: str) -> Path | None:
    """The first `<name>.safetensors` in `weights_dirs()`, or None."""
    for directory in weights_dirs():
        path = directory / f"{name}.safetensors"
        if path.is_file():
            return path
    return None


def _card(path: Path) -> dict:
    try:
        card = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def _measure(value: object) -> str:
    """A realism measure for a one-line reason: 4 significant digits (an AUROC of 0.9997 is not 1)."""
    return f"{value:.4g}" if isinstance(value, (int, float)) else "missing"


def realism_gate(path: Path, method: str, family: str = "unknown") -> tuple[bool, str]:
    """`--phase auto`'s quality bar for a learned checkpoint on volumes of one sequence family: its
    model card must record realism measures (`quality.realism.by_family[family]`, lower is closer to
    real phase) of the model and of `physics` on the same held-out real slices of that family, and
    show the model closer on at least one measure and worse on none. Where the card records the
    paired difference with its 95% interval (`model_minus_physics`), worse means the interval lies
    above 0 and closer below it (a difference inside the interval is no measured difference), and a
    measure without an interval (the classifier AUROC) can only make it worse, by its mean; a card
    without intervals is judged by the means. Why: a model is only known to beat the model-free physics model where
    it was measured to; elsewhere `auto` keeps `physics` (`--phase METHOD` still uses the checkpoint).
    Cards of the first format, with one `quality.realism` measured on a mixed set, stand for the
    volumes whose family is unknown."""
    realism = _card(path).get("quality", {}).get("realism", {})
    entry = realism.get("by_family", {}).get(family) if isinstance(realism, dict) else None
    if entry is None and family == "unknown" and isinstance(realism, dict) and "model" in realism:
        entry = realism
    try:
        model, physics = dict(entry["model"]), dict(entry["physics"])  # type: ignore[index]
        if not physics:
            raise ValueError("no measures")
        paired = dict(entry.get("model_minus_physics") or {})  # type: ignore[union-attr]
    except (ValueError, KeyError, TypeError, AttributeError):
        return False, f"{path.with_suffix('.json').name} records no realism against physics for {family} volumes; use --phase {method} to force it"
    verdicts: dict[str, list[str]] = {"worse": [], "closer": [], "tied": []}
    for m, v in physics.items():
        mine = model.get(m)
        try:
            low, high = (float(x) for x in paired[m]["interval_95"])
            verdict = "worse" if low > 0 else "closer" if high < 0 else "tied"
        except (KeyError, TypeError, ValueError):
            try:
                lower = float(mine) < float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                lower = False
            verdict = "worse" if not lower else "tied" if paired else "closer"
        verdicts[verdict].append(f"{m} {_measure(mine)} vs {_measure(v)}")
    if verdicts["worse"] or not verdicts["closer"]:
        lost = "; ".join(verdicts["worse"]) or "closer on no measure"
        return False, f"{path.name} is less realistic than physics on {family} volumes ({lost}); use --phase {method} to force it"
    tied = ", ".join(t.split()[0] for t in verdicts["tied"])
    detail = f" (no measured difference in {tied})" if tied else " on every measure"
    return True, f"{path.name} is more realistic than physics on {family} volumes{detail}"


CPU_SECONDS_PER_SLICE = 0.5  # what `auto` accepts on a CPU: about 10 minutes for a 1,200-slice archive


def cpu_speed_gate(path: Path, method: str) -> tuple[bool, str]:
    """Whether a learned checkpoint is fast enough on a CPU for `auto`: its card's measured
    `quality.speed.cpu_seconds_per_slice` (one core) must be at most CPU_SECONDS_PER_SLICE."""
    speed = _card(path).get("quality", {}).get("speed", {}).get("cpu_seconds_per_slice")
    if not isinstance(speed, (int, float)):
        return False, f"no GPU, and {path.with_suffix('.json').name} records no CPU speed; use --phase {method} to force it"
    if speed > CPU_SECONDS_PER_SLICE:
        return False, f"no GPU: {speed:.2g} s per slice on a CPU core is slow; use --phase {method} to force it"
    return True, f"{speed:.2g} s per slice on one CPU core"
