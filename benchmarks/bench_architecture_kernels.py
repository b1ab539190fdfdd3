"""Time (wall and CPU) and peak memory of widenet.infinite_kernels on convolutional nets.

Cases of issue 11: a 3-layer 3x3 ReLU CNN on 8x8x1 images with a flatten readout or a global
average pooling, and Myrtle-5 on 32x32x3 images; float32, inputs N(0, 1). CPU time is what an
idle core takes; on a shared machine the wall time can be many times larger.
Usage: OMP_NUM_THREADS=1 python benchmarks/bench_architecture_kernels.py CASE N
with CASE one of flatten, pool, myrtle (docs/architectures.md has the figures).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import widenet as wn
from widenet import nn


def cnn(pool: bool) -> torch.nn.Module:
    layers = []
    for channels_in in (1, 8, 8):
        layers += [nn.Conv2d(channels_in, 8, 3), nn.Activation("relu")]
    head = [nn.GlobalAvgPool(), nn.Dense(8, 1)] if pool else [nn.Flatten(), nn.Dense(8 * 64, 1)]
    return nn.Sequential(*layers, *head)


def myrtle() -> torch.nn.Module:
    """Myrtle-5 (Shankar et al. 2020): [conv-relu] x2, pool, conv-relu, pool, conv-relu,
    pool x3, flatten, dense; same padding, sigma_w^2 = 2 (docs/theory.md section 7)."""
    def block(channels_in: int) -> list[torch.nn.Module]:
        return [nn.Conv2d(channels_in, 8, 3, weight_std=2**0.5), nn.Activation("relu")]
    return nn.Sequential(*block(3), *block(8), nn.AvgPool2d(2), *block(8), nn.AvgPool2d(2),
                         *block(8), nn.AvgPool2d(2), nn.AvgPool2d(2), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Dense(8, 1, weight_std=2**0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case", choices=["flatten", "pool", "myrtle"])
    parser.add_argument("n", type=int)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    if args.case == "myrtle":
        model, x = myrtle(), torch.randn(args.n, 3, 32, 32, generator=generator)
    else:
        model, x = cnn(args.case == "pool"), torch.randn(args.n, 1, 8, 8, generator=generator)
    wall, cpu = time.perf_counter(), time.process_time()
    wn.infinite_kernels(model, x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.case} n={args.n}: wall {wall:.2f} s, cpu {cpu:.2f} s, peak RSS {peak:.2f} GiB, "
          f"threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
