"""`kspacify methods`: the phase methods, their options and defaults, and what `auto` picks here."""

from __future__ import annotations

import json

from kspacify.commands.common import user_errors


@user_errors
def command() -> None:
    """List the phase methods with their options (KEY=DEFAULT, type), what they read of the acquisition, and what `--phase auto` picks here for each sequence family."""
    from kspacify import phase

    for name, spec in phase.registry().items():
        print(f"{name:10s} {spec.summary}")
        if spec.uses:
            print(f"{'':10s}   uses: {', '.join(spec.uses)}")
        for option in spec.option_list():
            default = json.dumps(option.default if not isinstance(option.default, tuple) else list(option.default), default=str)
            hint = f"  {option.help}" if option.help else ""
            print(f"{'':10s}   --phase-opt {option.name}={default}  ({option.type}){hint}")
    print("auto, per volume by its acquisition's sequence family:")
    for family, (chosen, why) in phase.choices("auto").items():
        print(f"  {family:20s} -> {chosen} ({why})")
