"""`python -m kspacify` (and `torchrun -m kspacify train ...`) run the command line."""

from kspacify.cli import app

app(prog_name="kspacify")
