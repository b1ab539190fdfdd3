"""The empirical NTK on models its design did not single out: each test pins a fixed failure."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.empirical_models import (
    brute_ntk,
    linear_stack,
    one_thread,  # noqa: F401 (an autouse fixture)
    points,
    relative_error,
)
from widenet.kernels.empirical import empirical_ntk
from widenet.kernels.jacobians import jacobian

TOL = 1e-10
METHODS = ("auto", "layerwise", "jacobian", "ntk-vp")


@pytest.mark.parametrize("method", METHODS)
def test_a_compiled_model_has_the_kernel_of_the_module_it_wraps(method):
    model = linear_stack()
    compiled = torch.compile(model, backend="eager")
    x = points(4)
    result = empirical_ntk(compiled, x, outputs="full", per_layer=True, method=method)
    assert relative_error(result.full, brute_ntk(model, x)) < TOL
    assert list(result.blocks) == [name for name, _ in model.named_parameters()]
    assert list(jacobian(compiled, x)) == list(result.blocks)
