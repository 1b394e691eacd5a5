"""Phase synthesis: one module per method, found by `kspacify.phase.base.registry`."""

from kspacify.phase.base import (
    AutoPhase,
    MethodSpec,
    PhaseSynthesizer,
    choices,
    create,
    method_names,
    parse,
    registry,
    resolve,
    wrap,
)

__all__ = ["AutoPhase", "MethodSpec", "PhaseSynthesizer", "choices", "create", "method_names", "parse", "registry", "resolve", "wrap"]
