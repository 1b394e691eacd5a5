"""Phase synthesis: one module per method, found by `kspacify.phase.base.registry`."""

from kspacify.phase.base import (
    ACQUIRED,
    AutoPhase,
    MethodSpec,
    PhaseSynthesizer,
    choices,
    create,
    method_names,
    parse,
    reads_acquired_phase,
    registry,
    resolve,
    wrap,
)

__all__ = ["ACQUIRED", "AutoPhase", "MethodSpec", "PhaseSynthesizer", "choices", "create", "method_names", "parse", "reads_acquired_phase", "registry", "resolve", "wrap"]
