"""Former home of :class:`widenet.nn.Dense`, kept as an alias for the modules that still import
it from here (dynamics.optim, diagnostics.margins); new code imports ``widenet.nn.Dense``."""

from widenet.nn.dense import Dense

__all__ = ["Dense"]
