"""Start-up of the ``widenet`` command: commands that only read configs, timed end to end.

    git archive BASE_COMMIT src | tar -x -C /tmp/base     # an earlier tree to compare with
    python benchmarks/bench_cli_startup.py --baseline /tmp/base/src

Each command runs ``--repeats`` times in a fresh process (``python -m widenet.cli ...``),
alternating between this tree's ``src`` and the baseline's (so that a change in the machine's
load hits both alike); printed are the mean wall seconds and the mean CPU seconds (user and
system, the child's own rusage) of each. Then the slowest imports of the sweep's ``--dry-run``
under each tree, from ``python -X importtime`` (cumulative microseconds of each import that
took longest, nested ones included). Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["sweep", "ntk-spectrum", "--grid", "seeds=2,3", "--dry-run"]
COMMANDS = [["--version"], ["studies"], ["config", "ntk-spectrum"], SWEEP]


def timed(source: Path, args: list[str], out: Path) -> tuple[float, float]:
    """(wall, CPU seconds) of ``python -m widenet.cli ARGS`` under ``source``, its run store in
    ``out`` (``WIDENET_RUNS``)."""
    env = {**os.environ, "PYTHONPATH": str(source), "WIDENET_RUNS": str(out)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "widenet.cli", *args], env=env,
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"widenet {' '.join(args)} failed under {source}")
    return wall, usage.ru_utime + usage.ru_stime


def slowest_imports(source: Path, out: Path, top: int) -> list[tuple[int, str]]:
    """The ``top`` imports of the sweep's --dry-run with the largest cumulative time (us)."""
    env = {**os.environ, "PYTHONPATH": str(source), "WIDENET_RUNS": str(out)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "widenet.cli", *SWEEP],
                          env=env, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            rows.append((int(cumulative), name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True,
                        help="the src folder of the tree to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="slowest imports shown")
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT / "src"}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        print(f"load average {os.getloadavg()[0]:.2f}; mean of {args.repeats} runs")
        print(f"{'command':56} {'tree':10} {'wall s':>7} {'CPU s':>7}")
        for command in COMMANDS:
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
            for _ in range(args.repeats):
                for name, source in trees.items():
                    runs[name].append(timed(source, command, out))
            for name, measured in runs.items():
                wall = statistics.mean(w for w, _ in measured)
                cpu = statistics.mean(c for _, c in measured)
                print(f"{'widenet ' + ' '.join(command):56} {name:10} {wall:7.2f} {cpu:7.2f}")
        print(f"load average {os.getloadavg()[0]:.2f}")
        for name, source in trees.items():
            print(f"\nslowest imports of widenet {' '.join(SWEEP)} ({name}), cumulative us:")
            for cumulative, module in slowest_imports(source, out, args.top):
                print(f"{cumulative:>10}  {module}")


if __name__ == "__main__":
    main()
