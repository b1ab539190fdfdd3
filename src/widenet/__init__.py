"""widenet: the theory of wide neural networks, measured in PyTorch."""

from widenet import activations, widths
from widenet.activations import Activation, get_activation
from widenet.errors import WidenetError
from widenet.kernels.infinite import InfiniteKernels, LayerKernels, infinite_kernels
from widenet.kernels.spectra import Spectrum, condition_number, spectrum
from widenet.layers import Dense
from widenet.models import MLP
from widenet.parametrizations import Parametrization, get_parametrization

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Activation",
    "Dense",
    "InfiniteKernels",
    "LayerKernels",
    "Parametrization",
    "Spectrum",
    "WidenetError",
    "activations",
    "condition_number",
    "get_activation",
    "get_parametrization",
    "infinite_kernels",
    "spectrum",
    "widths",
]
