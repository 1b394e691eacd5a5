"""`kspacify methods`: the phase methods and coil models, their options and defaults, and what
`auto` picks here."""

from __future__ import annotations

import json

from kspacify.commands.common import user_errors
from kspacify.options import OptionInfo


def _options(flag: str, options: list[OptionInfo]) -> None:
    for option in options:
        default = json.dumps(option.default if not isinstance(option.default, tuple) else list(option.default), default=str)
        hint = f"  {option.help}" if option.help else ""
        print(f"{'':10s}   {flag} {option.name}={default}  ({option.type}){hint}")


@user_errors
def command() -> None:
    """List the phase methods and coil models with their options (KEY=DEFAULT, type), what the phase methods read of the acquisition, and what `--phase auto` picks here for each sequence family."""
    from kspacify import coils, phase

    for name, spec in phase.registry().items():
        print(f"{name:10s} {spec.summary}")
        if spec.uses:
            print(f"{'':10s}   uses: {', '.join(spec.uses)}")
        _options("--phase-opt", spec.option_list())
    print("auto, per volume: acquired phase where it has one, else by its acquisition's sequence family:")
    for family, (chosen, why) in phase.choices("auto").items():
        print(f"  {family:20s} -> {chosen} ({why})")
    print()
    print(f"coil models (--coils N > 1 --coil-model NAME; default {coils.DEFAULT_MODEL}):")
    for model_name, model in coils.registry().items():
        most, how = model.capacity(model.options())
        print(f"{model_name:10s} {model.summary}; at most {most} coils ({how.split(';')[0]})")
        _options("--coil-opt", model.option_list())
