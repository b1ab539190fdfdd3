"""Fault injection: two ``widenet run --resume`` of one killed run, started at the same moment.

    python benchmarks/fault_injection_resume.py              # 10 tries
    python benchmarks/fault_injection_resume.py --tries 30

Each try runs the test suite's toy study (4 tasks) into a fresh store, kills it with SIGKILL
after its first task, then starts two ``--resume`` processes together and waits for both.
A try is **safe** when exactly one process resumed the killed run and the run ended
``completed`` with its 4 tasks, and the other process either was refused ("run X is being
resumed by another process", exit 2) or created a new run only after the killed run had
completed (nothing was left to resume). A try is **unsafe** when both resumed the same run, a
process exited with another error, the killed run did not end ``completed``, or the other
process started a duplicate run from scratch while the killed run was being resumed. Run from
the repository root; prints one line per try and the totals.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDENET = [sys.executable, "-c", "import sys; from widenet.cli import main; sys.exit(main())"]


def _start(store: Path, *args: str, pause_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "WIDENET_STUDIES": "toy=tests.studies.toy_study",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
           "OMP_NUM_THREADS": "1"}
    env.pop("TOY_PAUSE_AT", None)
    if pause_at is not None:
        env["TOY_PAUSE_AT"] = str(pause_at)
    return subprocess.Popen([*WIDENET, "run", "toy", "--out", str(store), *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _killed_run(store: Path) -> str:
    """The id of a toy run killed with SIGKILL after its first task."""
    from widenet.store import RunStore

    process = _start(store, pause_at=2)
    runs = RunStore(store)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listing = runs.runs() if runs.db_path.exists() else None
        if listing is not None and len(listing) == 1 and listing["tasks_done"].iloc[0] == 1:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return str(listing["id"].iloc[0])
        time.sleep(0.05)
    raise RuntimeError("the toy run did not store its first task in 120 s")


def one_try(folder: Path) -> tuple[bool, str]:
    """Whether the try was safe (see the module doc), and what happened, in words."""
    from widenet.store import RunStore

    run_id = _killed_run(folder)
    both = [_start(folder, "--resume"), _start(folder, "--resume")]
    results = [(process.wait(timeout=300), *process.communicate()) for process in both]
    resumed = sum("resumed: 1 finished task(s) reused" in out for _, out, _ in results)
    refused = sum(code == 2 and "is being resumed by another process" in err
                  for code, _, err in results)
    fresh = sum(code == 0 and "resumed:" not in out for code, out, _ in results)
    store = RunStore(folder)
    record = store.run(run_id)
    others = store.runs()
    others = others[others["id"] != run_id]
    duplicates = int((others["created"] < (record.finished or "")).sum())
    safe = (resumed == 1 and refused + fresh == 1 and record.status == "completed"
            and record.tasks_done == 4 and duplicates == 0)
    errors = [err.strip() for code, _, err in results if code not in (0, 2)]
    return safe, (f"resumed {resumed}, refused {refused}, new run {fresh} (of which started "
                  f"while the killed run was resumed: {duplicates}); the killed run is "
                  f"{record.status} with {record.tasks_done} tasks"
                  + (f"; errors: {errors}" if errors else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
    unsafe = 0
    for attempt in range(args.tries):
        with tempfile.TemporaryDirectory(prefix="widenet-fault-") as scratch:
            safe, text = one_try(Path(scratch) / "runs")
        unsafe += not safe
        print(f"try {attempt + 1}: {'safe' if safe else 'UNSAFE'}: {text}", flush=True)
    print(f"{args.tries - unsafe} of {args.tries} tries safe, {unsafe} unsafe")


if __name__ == "__main__":
    main()
