"""Time and peak memory of the infinite-width NTK of CNNs, widenet beside neural-tangents.

Cases (float32, x2 = None, NTK parametrization, sigma_w^2 = 2, no biases, 3x3 filters with
"same" padding, ReLU):
  flatten  3 convolutions -> flatten -> dense, on n digits as 1x8x8 images (n = 200, 500)
  gap      the same with global average pooling before the dense readout (n = 200, 500, 2000)
  myrtle5  Myrtle-5 (docs/theory.md section 7) on n images of 32x32x3 (n = 20, 1000)
Digits: load_dataset("digits-images", normalize="sphere"), the first n of the seeded shuffle;
beyond the 1797 digits, their mirror images (flipped left-right) fill up to n. The 32x32x3
images are N(0, 1) pixels, or CIFAR-10 test images with --cifar FOLDER.

Each measurement runs in a fresh process, so its peak resident memory (ru_maxrss, including
about 0.3 GiB of torch or JAX itself) is its own; the time is the best of up to --repeats runs
after one warm-up run (which, for neural-tangents, includes jit compilation), stopping early
once --budget seconds were spent (a warm-up run longer than that is reported itself: "cold").
With --nt-python (an interpreter with neural-tangents, JAX and numpy; see docs/benchmarks.md)
the same cases run in neural-tangents on the same inputs, and the largest entry difference
between the two NTKs, relative to the largest entry, is shown.
This file runs under both interpreters: only the standard library and numpy are imported at
module level.

Usage: python benchmarks/bench_cnn_kernels.py [--nt-python /tmp/ntvenv/bin/python]
       [--cases flatten:200,flatten:500,gap:200,...] [--nt-cases ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = "flatten:200,flatten:500,gap:200,gap:500,gap:2000,myrtle5:20,myrtle5:1000"
#: neural-tangents runs these by default: at n = 500 its global-pooling kernel asks for
#: 28.7 GB (more than this machine has) and Myrtle-5 on 1000 images would take hours.
NT_CASES = "flatten:200,flatten:500,gap:200,myrtle5:20"
SIGMA_W2 = 2.0


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _best_time(compute, repeats: int, budget: float) -> tuple[float, float, int, object]:
    """(best wall seconds, CPU seconds of that run, timed runs, last result) of ``compute()``
    after one warm-up run, with at most ``repeats`` timed runs and none started after
    ``budget`` seconds in total. A warm-up run that alone exceeds ``budget`` is reported
    itself, as 0 timed runs (a cold run: for neural-tangents it includes jit compilation).
    CPU seconds (all threads of the process) are less sensitive than wall seconds to other
    load on a shared machine."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = compute()
    best, cpu, runs = time.perf_counter() - start, time.process_time() - start_cpu, 0
    if best > budget:
        return best, cpu, runs, result
    best = math.inf
    while runs < repeats and (runs == 0 or time.perf_counter() - start < budget):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = compute()
        wall = time.perf_counter() - began
        if wall < best:
            best, cpu = wall, time.process_time() - began_cpu
        runs += 1
    return best, cpu, runs, result


# ----------------------------------------------------------------- widenet (main interpreter)

def widenet_model(arch: str, channels: int, in_channels: int):
    """The widenet.nn model of ``arch`` ("flatten", "gap", "myrtle5") with ``channels``
    channels per hidden layer (the limit does not depend on it)."""
    from widenet import nn as wnn

    std = math.sqrt(SIGMA_W2)

    def block(c_in: int) -> list:
        return [wnn.Conv2d(c_in, channels, 3, padding="same", weight_std=std),
                wnn.Activation("relu")]

    if arch in ("flatten", "gap"):
        layers = block(in_channels) + block(channels) + block(channels)
        if arch == "flatten":
            readout = [wnn.Flatten(), wnn.Dense(channels * 64, 1, weight_std=std)]
        else:
            readout = [wnn.GlobalAvgPool(), wnn.Dense(channels, 1, weight_std=std)]
        return wnn.Sequential(*layers, *readout, seed=0)
    pool = wnn.AvgPool2d(2)
    layers = (block(in_channels) + block(channels) + [pool] + block(channels) + [pool]
              + block(channels) + [pool, pool, pool])
    return wnn.Sequential(*layers, wnn.Flatten(), wnn.Dense(channels, 1, weight_std=std),
                          seed=0)


def run_widenet(arch: str, inputs: Path, output: Path | None, repeats: int, budget: float,
                device: str) -> dict:
    """Time widenet.infinite_kernels(model, x) (float32) in this process."""
    import torch

    import widenet

    x = torch.from_numpy(np.load(inputs)).to(device)
    model = widenet_model(arch, 8, x.shape[1]).to(device=device, dtype=torch.float32)

    def compute():
        kernels = widenet.infinite_kernels(model, x)
        if device != "cpu":
            torch.cuda.synchronize()
        return kernels

    best, cpu, runs, kernels = _best_time(compute, repeats, budget)
    ntk = kernels.ntk
    if output is not None:
        np.save(output, ntk.reshape(x.shape[0], x.shape[0]).cpu().numpy())
    peak_gpu = (torch.cuda.max_memory_allocated() / 2**30) if device != "cpu" else None
    return {"seconds": best, "cpu_seconds": cpu, "runs": runs, "peak_rss_gib": _peak_rss_gib(),
            "peak_gpu_gib": peak_gpu, "threads": torch.get_num_threads()}


# ------------------------------------------------------ neural-tangents (--nt-python interpreter)

def nt_model(arch: str):
    """The neural-tangents stax kernel function of ``arch``, the same network."""
    from neural_tangents import stax

    std = math.sqrt(SIGMA_W2)

    def block() -> list:
        return [stax.Conv(1, (3, 3), padding="SAME", W_std=std, b_std=None), stax.Relu()]

    if arch in ("flatten", "gap"):
        readout = stax.GlobalAvgPool() if arch == "gap" else stax.Flatten()
        return stax.serial(*block() * 3, readout, stax.Dense(1, W_std=std, b_std=None))[2]
    pool = stax.AvgPool((2, 2), strides=(2, 2))
    layers = block() * 2 + [pool] + block() + [pool] + block() + [pool] * 3
    return stax.serial(*layers, stax.Flatten(), stax.Dense(1, W_std=std, b_std=None))[2]


def run_nt(arch: str, inputs: Path, output: Path | None, repeats: int, budget: float) -> dict:
    """Time the jit-compiled neural-tangents NTK (float32) in this process."""
    import jax

    x = np.load(inputs).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    kernel_fn = jax.jit(nt_model(arch), static_argnames="get")

    def compute():
        return kernel_fn(x, None, get="ntk").block_until_ready()

    best, cpu, runs, ntk = _best_time(compute, repeats, budget)
    if output is not None:
        np.save(output, np.asarray(ntk))
    return {"seconds": best, "cpu_seconds": cpu, "runs": runs, "peak_rss_gib": _peak_rss_gib(),
            "jax": jax.__version__}


# ------------------------------------------------------------------------- driver

def make_inputs(arch: str, n: int, cifar: str | None) -> np.ndarray:
    """The float32 NCHW inputs of a case (module docstring)."""
    import torch

    from widenet.data import load_dataset

    if arch in ("flatten", "gap"):
        digits = load_dataset("digits-images", normalize="sphere", seed=0).x
        x = torch.cat([digits, digits.flip(-1)])[:n]
        if len(x) < n:
            raise SystemExit(f"at most {2 * len(digits)} digit images; got n={n}")
    elif cifar is not None:
        x = load_dataset(cifar, n=1, n_test=n, seed=0, normalize="standardize").x_test
    else:
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return x.to(torch.float32).numpy()


def _child(python: str, arch: str, inputs: Path, output: Path, args: argparse.Namespace,
           engine: str) -> dict | str:
    """Run one measurement in a fresh ``python`` process; its JSON, or the error's last line."""
    command = [python, __file__, "--child", engine, arch, str(inputs), str(output),
               "--repeats", str(args.repeats), "--budget", str(args.budget),
               "--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        return lines[-1][:160]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=CASES, help="comma-separated arch:n")
    parser.add_argument("--nt-cases", default=NT_CASES, help="cases also run in neural-tangents")
    parser.add_argument("--nt-python", help="interpreter with neural-tangents (none: skip it)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="no timed run starts after this many seconds of a case")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--device", default="cpu", help="widenet's device (cpu, cuda)")
    parser.add_argument("--cifar", help="a CIFAR-10 binary folder for the 32x32x3 images")
    parser.add_argument("--child", nargs=4, metavar=("ENGINE", "ARCH", "INPUTS", "OUTPUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, arch, inputs, output = args.child
        run = (run_widenet(arch, Path(inputs), Path(output), args.repeats, args.budget,
                           args.device) if engine == "widenet"
               else run_nt(arch, Path(inputs), Path(output), args.repeats, args.budget))
        print(json.dumps(run))
        return
    nt_cases = set(args.nt_cases.split(",")) if args.nt_python else set()
    print(f"# {platform.machine()}, {args.device}, {time.strftime('%Y-%m-%d %H:%M')}, load "
          f"average {os.getloadavg()[0]:.1f}")
    print("| case | n | widenet s (runs) | CPU s | peak RSS GiB | neural-tangents s (runs) | "
          "CPU s | peak RSS GiB | speed-up | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            arch, n = case.split(":")
            inputs, ours, theirs = (Path(folder) / f"{case}-{part}.npy"
                                    for part in ("x", "widenet", "nt"))
            np.save(inputs, make_inputs(arch, int(n), args.cifar))
            mine = _child(sys.executable, arch, inputs, ours, args, "widenet")
            other = (_child(args.nt_python, arch, inputs, theirs, args, "nt")
                     if case in nt_cases else "not run")
            cells = [arch, n]
            for result in (mine, other):
                cells += ([f"{result['seconds']:.3g} ({result['runs'] or 'cold'})",
                           f"{result['cpu_seconds']:.3g}", f"{result['peak_rss_gib']:.2f}"]
                          if isinstance(result, dict) else [result, "", ""])
            if isinstance(mine, dict) and isinstance(other, dict):
                a, b = np.load(ours).astype(np.float64), np.load(theirs).astype(np.float64)
                cells += [f"{other['seconds'] / mine['seconds']:.1f}x",
                          f"{np.abs(a - b).max() / np.abs(b).max():.1e}"]
            else:
                cells += ["", ""]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
