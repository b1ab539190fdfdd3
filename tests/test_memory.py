"""Free memory and the up-front refusal of oversized requests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from widenet import memory
from widenet.errors import WidenetError
from widenet.models import MLP


def test_available_memory_reads_memavailable(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemAvailable:    250 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    assert memory.available_memory() == 250 * 1024


def test_without_meminfo_it_falls_back_to_sysconf(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "missing")
    if not hasattr(os, "sysconf"):
        pytest.skip("no os.sysconf here")
    expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory.available_memory() == pytest.approx(expected, rel=0.5)


def test_where_free_memory_is_unknown_nothing_is_refused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "missing")
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert memory.available_memory() is None
    memory.require_memory(10 ** 30, "anything", "no fix")
    assert memory.available_memory("meta") is None


def test_require_memory_says_what_it_needs_and_what_to_do() -> None:
    free = memory.available_memory()
    assert free is not None
    assert free > 0
    memory.require_memory(1, "one byte", "no fix")
    with pytest.raises(WidenetError, match=r"^ten widths needs 1\.6 PB of memory but cpu has "
                                           r".* available; use fewer$"):
        memory.require_memory(16 * 10 ** 14, "ten widths", "use fewer")


def test_mlp_parameters_counts_weights_and_biases() -> None:
    net = MLP(5, [7, 3], 2, bias_std=0.1)
    assert memory.mlp_parameters(5, [7, 3], 2) == sum(p.numel() for p in net.parameters())
    assert memory.mlp_parameters(5, [7, 3], 2, bias=False) == 5 * 7 + 7 * 3 + 3 * 2


def test_a_net_too_large_is_refused_before_allocating() -> None:
    with pytest.raises(WidenetError, match=r"an MLP with 2,000,074,000,000 parameters needs "
                                           r"8 TB of memory .*use smaller widths"):
        MLP(64, [10 ** 6] * 3, 10, dtype=torch.float32)


def test_format_bytes() -> None:
    assert memory.format_bytes(512) == "512 B"
    assert memory.format_bytes(6_400_000_000) == "6.4 GB"
    assert memory.format_bytes(1.28e14) == "128 TB"


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_a_net_too_deep_is_refused_before_building_its_layers(
        device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each layer's module objects take host memory (about 10 kB) whatever its widths: with
    1 MB free, 1000 layers of width 1 (2000 parameters, 8 kB of values) were built; 10^7
    layers would have run for an hour into 100 GB (330 us, 10 kB per layer measured)."""
    monkeypatch.setattr(memory, "_host_available", lambda: 10**6)
    with pytest.raises(WidenetError, match=r"an MLP with 1,000 layers \(their modules alone\) "
                                           r"needs 16 MB of memory .*use fewer layers"):
        MLP(3, [1] * 999, 1, device=device)
    MLP(3, [1] * 9, 1, device=device)  # 160 kB
