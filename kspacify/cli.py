"""The command line: this module only assembles the Typer app from `kspacify/commands/`, one module
per command. Parsing, planning and exit codes live in those modules; numerics live below them."""

from __future__ import annotations

import typer

from kspacify.commands import benchmark, convert, data, methods, train_gan, train_sbdm, train_varnet

app = typer.Typer(
    name="kspacify",
    help="Turn magnitude-only MRI (DICOM, NIfTI) into complex fastMRI k-space by synthesizing phase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("convert")(convert.convert)
app.command("scan")(convert.scan)
app.command("methods")(methods.command)
app.command("benchmark")(benchmark.command)

train_app = typer.Typer(help="Train the phase generators (SBDM, GAN) and the reconstruction network (VarNet).", no_args_is_help=True)
train_app.command("sbdm")(train_sbdm.command)
train_app.command("gan")(train_gan.command)
train_app.command("varnet")(train_varnet.command)
app.add_typer(train_app, name="train")

data_app = typer.Typer(help="Build complex training data from magnitude volumes.", no_args_is_help=True)
data_app.command("build")(data.command)
app.add_typer(data_app, name="data")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
