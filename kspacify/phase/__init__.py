"""Phase synthesis: one module per method, found by `kspacify.phase.base.registry`."""

from kspacify.phase.base import MethodSpec, PhaseSynthesizer, create, method_names, parse, registry, resolve, wrap

__all__ = ["MethodSpec", "PhaseSynthesizer", "create", "method_names", "parse", "registry", "resolve", "wrap"]
