"""The commands: one module per command (`convert` with `scan`, `methods`, `data`, `train_*`,
`benchmark`), each a Typer function that `kspacify/cli.py` registers; `common` is the leaf they all
share (exit codes, console, error handling, option types). Modules import torch only inside the
functions, so the CLI starts fast."""
