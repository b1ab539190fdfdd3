"""widenet: the theory of wide neural networks, measured in PyTorch.

The names below are imported on first use (PEP 562), so that ``import widenet.cli`` (and with it
``widenet --version`` or ``widenet sweep --dry-run``) does not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from widenet.deferred import lazy_names

__version__ = "0.1.0"

_WHERE = {
    "activations": "widenet.activations",
    "data": "widenet.data",
    "diagnostics": "widenet.diagnostics",
    "parametrizations": "widenet.parametrizations",
    "widths": "widenet.widths",
    "nn": "widenet.nn",
    "Activation": "widenet.activations",
    "get_activation": "widenet.activations",
    "predict": "widenet.dynamics.predict",
    "LazyModel": "widenet.dynamics.lazy",
    "LinearizedModel": "widenet.dynamics.linearize",
    "linearize": "widenet.dynamics.linearize",
    "TrainResult": "widenet.dynamics.train",
    "Optimizer": "widenet.dynamics.optim",
    "Checkpoint": "widenet.dynamics.checkpoint",
    "train": "widenet.dynamics.train",
    "WidenetError": "widenet.errors",
    "empirical_ntk": "widenet.kernels.empirical",
    "LayerKernels": "widenet.kernels.infinite",
    "infinite_kernels": "widenet.kernels.infinite",
    "jacobian": "widenet.kernels.jacobians",
    "ntk_vector_product": "widenet.kernels.ntk_vp",
    "Kernels": "widenet.kernels.result",
    "Spectrum": "widenet.kernels.spectra",
    "condition_number": "widenet.kernels.spectra",
    "spectrum": "widenet.kernels.spectra",
    "Dense": "widenet.nn",
    "MLP": "widenet.models",
    "Parametrization": "widenet.parametrizations",
    "get_parametrization": "widenet.parametrizations",
    "RunStore": "widenet.store",
    "load_checks": "widenet.store",
    "load_runs": "widenet.store",
    "load_table": "widenet.store",
}
"""Each public name and the module that defines it (or, for :data:`_SUBMODULES`, that it is)."""

_SUBMODULES = frozenset({"activations", "data", "diagnostics", "nn", "parametrizations",
                         "widths", "predict"})

if TYPE_CHECKING:
    from widenet import activations, data, diagnostics, nn, parametrizations, widths
    from widenet.activations import Activation, get_activation
    from widenet.dynamics import predict
    from widenet.dynamics.checkpoint import Checkpoint
    from widenet.dynamics.lazy import LazyModel
    from widenet.dynamics.linearize import LinearizedModel, linearize
    from widenet.dynamics.optim import Optimizer
    from widenet.dynamics.train import TrainResult, train
    from widenet.errors import WidenetError
    from widenet.kernels.empirical import empirical_ntk
    from widenet.kernels.infinite import LayerKernels, infinite_kernels
    from widenet.kernels.jacobians import jacobian
    from widenet.kernels.ntk_vp import ntk_vector_product
    from widenet.kernels.result import Kernels
    from widenet.kernels.spectra import Spectrum, condition_number, spectrum
    from widenet.models import MLP
    from widenet.nn import Dense
    from widenet.parametrizations import Parametrization, get_parametrization
    from widenet.store import RunStore, load_checks, load_runs, load_table


__getattr__, __dir__ = lazy_names(__name__, _WHERE, _SUBMODULES)

__all__ = [
    "MLP",
    "Activation",
    "Checkpoint",
    "Dense",
    "Kernels",
    "LayerKernels",
    "LazyModel",
    "LinearizedModel",
    "Optimizer",
    "Parametrization",
    "RunStore",
    "Spectrum",
    "TrainResult",
    "WidenetError",
    "activations",
    "condition_number",
    "data",
    "diagnostics",
    "empirical_ntk",
    "get_activation",
    "get_parametrization",
    "infinite_kernels",
    "jacobian",
    "linearize",
    "load_checks",
    "load_runs",
    "load_table",
    "nn",
    "ntk_vector_product",
    "parametrizations",
    "predict",
    "spectrum",
    "train",
    "widths",
]
