"""The local engine's workers: what they inherit from the driver, what travels to them and
back, and the counts the engines accept."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.sweeps import LocalEngine, RayEngine
from widenet.sweeps.engines import Job, Outcome


def _worker_view() -> tuple[str | None, bool]:
    return os.environ.get("WIDENET_STUDIES"), "/nowhere/plugins" in sys.path


def _views(engine: LocalEngine) -> list[tuple[str | None, bool]]:
    results: list[Outcome] = []
    engine.run([Job("view", _worker_view, ())], lambda _job, outcome: results.append(outcome))
    assert [outcome.status for outcome in results] == ["done"]
    return [outcome.result for outcome in results]


def test_workers_see_the_environment_and_path_of_each_run_not_of_the_fork_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = LocalEngine(1, retries=0)
    monkeypatch.setenv("WIDENET_STUDIES", "first=a.b")
    assert _views(engine) == [("first=a.b", False)]  # the fork server runs from here on
    monkeypatch.setenv("WIDENET_STUDIES", "second=c.d")
    monkeypatch.syspath_prepend("/nowhere/plugins")
    assert _views(engine) == [("second=c.d", True)]
    monkeypatch.delenv("WIDENET_STUDIES")
    assert _views(engine) == [(None, True)]


def _parameter_count(net: nn.Module) -> int:
    return len(list(net.parameters()))


def _same(value: object) -> object:
    return value


def _unpicklable() -> object:
    return lambda: 0


def _outcomes(jobs: list[Job]) -> list[Outcome]:
    results: list[Outcome] = []
    LocalEngine(1, retries=0).run(jobs, lambda _job, outcome: results.append(outcome))
    return results


def test_a_deep_net_travels_to_a_worker_and_back() -> None:
    net = MLP(3, [2] * 400, 1, "relu", seed=0)  # 401 tensors: too many fds if each is shared
    count, back = _outcomes([Job("count", _parameter_count, (net,)), Job("back", _same, (net,))])
    assert (count.status, count.result) == ("done", 401)
    assert back.status == "done"
    assert torch.equal(back.result.state_dict()["layers.400.weight"],
                       net.state_dict()["layers.400.weight"])


def test_jobs_and_results_that_cannot_be_pickled_fail_with_a_reason() -> None:
    outcomes = _outcomes([Job("in", _same, (lambda: 0,)), Job("out", _unpicklable, ())])
    assert [outcome.status for outcome in outcomes] == ["failed", "failed"]
    assert "cannot be sent to a worker" in outcomes[0].reason
    assert "result cannot be sent back" in outcomes[1].reason


@pytest.mark.parametrize("engine", [LocalEngine, RayEngine])
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 0}, "--workers must be a positive number"),
    ({"workers": -2}, "--workers must be a positive number"),
    ({"retries": -1}, "retries must be >= 0"),
])
def test_bad_worker_and_retry_counts_are_refused(engine: type, kwargs: dict,
                                                 message: str) -> None:
    with pytest.raises(WidenetError, match=message):
        engine(**kwargs)


@pytest.mark.parametrize(("options", "message"), [
    ({"gpus_per_run": -1.0}, "--gpus-per-run must be a finite number >= 0, got -1.0"),
    ({"gpus_per_run": float("nan")}, "--gpus-per-run must be a finite number >= 0"),
    ({"gpus_per_run": float("inf")}, "--gpus-per-run must be a finite number >= 0, got inf"),
    ({"cpus_per_run": 0.0}, "cpus_per_run must be a positive number")])
def test_ray_resources_per_run_are_checked_before_ray_starts(options, message) -> None:
    with pytest.raises(WidenetError, match=message):
        RayEngine(**options)


_SLOW_JOB = '''
import os, pathlib, time
if os.environ.get("DRIVER_PID") != str(os.getpid()):  # the fork server preloads this module
    pathlib.Path(os.environ["FLAGS"], "server").touch()
    time.sleep(float(os.environ["SERVER_SLEEP"]))

def job(name):
    pathlib.Path(os.environ["FLAGS"], name).touch()
    time.sleep(60)
'''

_DRIVER = '''
import os, sys
os.environ["DRIVER_PID"] = str(os.getpid())
from slow_job import job
from widenet.sweeps.engines import Job, LocalEngine
try:
    LocalEngine(2, retries=0, warm=False).run([Job(str(i), job, (f"job{i}",)) for i in range(2)],
                                              lambda _job, _outcome: None)
except KeyboardInterrupt:
    sys.exit(130)
'''


@pytest.mark.parametrize(("server_sleep", "wait_for"), [(0, ["job0", "job1"]), (5, ["server"])],
                         ids=["workers running", "fork server starting"])
def test_ctrl_c_stops_the_local_engine_without_a_traceback(tmp_path, server_sleep: float,
                                                           wait_for: list[str]) -> None:
    """Ctrl-C reaches the whole process group: the driver stops and kills the workers; neither
    the workers nor the fork server (busy computing, or still importing) print a traceback."""
    import signal
    import subprocess
    import time

    (tmp_path / "slow_job.py").write_text(_SLOW_JOB)
    source = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "FLAGS": str(tmp_path), "SERVER_SLEEP": str(server_sleep),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), source])}
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER], env=env, cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not all((tmp_path / name).exists() for name in wait_for):
        assert driver.poll() is None, driver.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGINT)
    _, errors = driver.communicate(timeout=60)
    assert driver.returncode == 130
    assert errors == ""


def _sleep_with_pid_file(folder: str) -> None:
    Path(folder, str(os.getpid())).touch()
    import time

    time.sleep(60)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_second_ctrl_c_while_the_workers_are_stopped_leaves_none_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers ignore Ctrl-C, so the driver must kill every one: a Ctrl-C arriving as it
    kills the first (holding Ctrl-C down repeats it) left the others running their jobs."""
    import multiprocessing
    import signal
    import time

    kill = multiprocessing.get_context("forkserver").Process.kill

    def kill_then_ctrl_c(process: multiprocessing.Process) -> None:
        kill(process)
        signal.raise_signal(signal.SIGINT)

    def stop_when_all_started(_job: Job, _outcome: Outcome) -> None:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        monkeypatch.setattr(multiprocessing.get_context("forkserver").Process, "kill",
                            kill_then_ctrl_c)
        raise KeyboardInterrupt

    jobs = [Job("fast", _same, (0,)),
            *(Job(f"slow{i}", _sleep_with_pid_file, (str(tmp_path),)) for i in range(3))]
    with pytest.raises(KeyboardInterrupt):
        LocalEngine(4, retries=0, warm=False).run(jobs, stop_when_all_started)
    pids = [int(path.name) for path in tmp_path.iterdir()]
    assert len(pids) == 3
    deadline = time.monotonic() + 10
    while any(map(_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in pids if _running(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
