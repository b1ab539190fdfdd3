"""widenet: the theory of wide neural networks, measured in PyTorch."""

from widenet import activations, data, diagnostics, nn, parametrizations, widths
from widenet.activations import Activation, get_activation
from widenet.dynamics import predict
from widenet.dynamics.lazy import LazyModel
from widenet.dynamics.linearize import LinearizedModel, linearize
from widenet.dynamics.train import TrainResult, train
from widenet.errors import WidenetError
from widenet.kernels.empirical import EmpiricalNTK, empirical_ntk
from widenet.kernels.infinite import LayerKernels, infinite_kernels
from widenet.kernels.jacobians import jacobian
from widenet.kernels.ntk_vp import ntk_vector_product
from widenet.kernels.result import Kernels
from widenet.kernels.spectra import Spectrum, condition_number, spectrum
from widenet.models import MLP
from widenet.nn import Dense
from widenet.parametrizations import Parametrization, get_parametrization
from widenet.store import RunStore, load_checks, load_runs, load_table

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Activation",
    "Dense",
    "EmpiricalNTK",
    "Kernels",
    "LayerKernels",
    "LazyModel",
    "LinearizedModel",
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
