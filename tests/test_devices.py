"""Devices by name, and whether this machine has them."""

from __future__ import annotations

import pytest
import torch

from widenet.devices import (
    check_device,
    describe_device,
    device_named,
    parameter_device,
    point_device,
    resolve_device,
)
from widenet.errors import WidenetError
from widenet.sweeps import LocalEngine, RayEngine


def test_devices_are_named_then_resolved_here() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert device_named("cuda:7") == torch.device("cuda", 7)  # a name, wherever it exists
    assert describe_device(torch.device("cpu")) == "cpu"
    for bad, message in [("quantum", "unknown device"), ("meta", "not supported")]:
        with pytest.raises(WidenetError, match=message):
            device_named(bad)
        with pytest.raises(WidenetError, match=message):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_local_engine_needs_the_device_here_a_ray_engine_only_its_name() -> None:
    with pytest.raises(WidenetError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(WidenetError, match="no CUDA device"):
        LocalEngine(1).check("cuda")
    RayEngine(workers=1).check("cuda:3")
    with pytest.raises(WidenetError, match="unknown device"):
        RayEngine(workers=1).check("quantum")


def test_check_device_passes_the_cpu_and_checks_any_other_name() -> None:
    """The cpu passes unasked (no torch needed); other names are checked as named (here=False)
    or as present on this machine (here=True)."""
    check_device("cpu", here=True)
    check_device("cuda:3", here=False)
    for here in (False, True):
        with pytest.raises(WidenetError, match="unknown device"):
            check_device("quantum", here=here)
    if not torch.cuda.is_available():
        with pytest.raises(WidenetError, match="no CUDA device"):
            check_device("cuda", here=True)


def test_a_sweep_point_given_gpus_runs_on_cuda() -> None:
    assert point_device("cpu", 0.5) == "cuda"
    assert point_device("cuda:1", 1.0) == "cuda"  # Ray shows the point only its own GPUs
    assert point_device("cpu", 0.0) == "cpu"
    assert point_device("cuda:1", 0.0) == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_layers_on_a_device_this_machine_lacks_are_refused_in_one_line() -> None:
    from widenet.models import MLP
    from widenet.nn import Conv2d, Dense

    assert parameter_device(None) is None
    assert parameter_device("meta") == torch.device("meta")
    for make in (lambda: MLP(3, [4], 1, device="cuda"), lambda: Conv2d(3, 4, 3, device="cuda:1"),
                 lambda: Dense(3, 4, device="tpu")):
        with pytest.raises(WidenetError, match=r"no CUDA device|unknown device"):
            make()
