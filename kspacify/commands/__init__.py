"""Subcommands beyond `convert`: each module defines one Typer command function named `command`,
registered in `kspacify/cli.py`. Modules import torch only inside the function, so the CLI starts fast."""
