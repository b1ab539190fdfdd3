"""First-use work done once in the local engine's fork server, so that every point's process
(forked from it) starts warm: importing this module draws a small figure the way the studies do
(font lookup, the mathtext parser, log axes, a legend, constrained layout, PNG encoding) and
computes a tiny infinite-width kernel and empirical NTK (torch's lazily built dispatch paths).

Measured on the ntk-spectrum quick study: a point in a fresh process forked from a server that
only imported the modules paid about 0.6 s more than a warm one (docs/benchmarks.md, "Sweeps").
Torch runs on one thread here, so that the server never starts a thread pool a fork would copy
without its threads; each point sets its own thread count. The warm-up is only a speed-up: if it
fails, the server starts anyway and the points pay their first use themselves.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch


def warm_up() -> None:
    """Draw and encode a two-panel figure with mathtext, log axes and a legend, and compute
    small kernels, discarding everything."""
    from widenet.figures import caption, label, legend, new_figure, png_bytes
    from widenet.kernels.empirical import empirical_ntk
    from widenet.kernels.infinite import infinite_kernels
    from widenet.models import MLP

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        figure, axes = new_figure(2)
        grid = np.geomspace(1.0, 100.0, 20)
        for ax in axes.flat:
            ax.plot(grid, grid**-0.5, marker="o", label=r"measured $\|\Theta\|$")
            ax.axhline(0.5, label=r"theory $\lambda_1 / n$", linestyle="--")
            label(ax, r"$\theta$ vs width $n$", "width", r"$\Delta$", logx=True, logy=True)
            legend(ax, fontsize=8)
        png_bytes(caption(figure, "warm-up"))
        net = MLP(3, [8], 1, "relu", seed=0)
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        infinite_kernels(net, x)
        empirical_ntk(net, x)
    finally:
        torch.set_num_threads(threads)


with contextlib.suppress(Exception):  # only a speed-up: an error must not stop the server
    warm_up()
