"""Where sweep points run: ``local`` (one process per point, up to ``workers`` at once) or
``ray`` (one Ray task per point, on a local instance or an existing cluster).

An engine runs :class:`Job` s (a picklable top-level function and its arguments: a sweep
point, a kernel block) and hands each outcome to the driver, which alone writes the results.
A job whose worker dies (killed, out of memory, node lost) is retried up to ``retries`` times
and then reported ``lost``; a job that raises is reported ``failed`` with the reason and is not
retried (it would raise again).

The local engine hands each job to its worker, and each outcome back, as bytes made by the
standard :mod:`pickle` (which copies tensor data), never as multiprocessing's shared-memory
tensors: those take one file descriptor per tensor, and a deep net would run out of them.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from widenet.devices import check_device
from widenet.errors import WidenetError


@dataclass(frozen=True)
class Job:
    """One unit of work: ``function(*args)`` (picklable), known by ``label``."""

    label: str
    function: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Outcome:
    """What came of a job: ``status`` is ``done`` (with ``result``), ``failed`` or ``lost``."""

    status: str
    result: Any = None
    reason: str = ""


OnResult = Callable[[Job, Outcome], None]
"""Called once per job, in the driver, as soon as its outcome is known."""

FORWARDED_VARIABLES = ("WIDENET_STUDIES", "PYTHONPATH")
"""Environment variables a worker takes from the driver as they are when the jobs start."""


def _forwarded_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}


class Engine(Protocol):
    """Runs jobs and reports each one's outcome as it arrives."""

    def run(self, jobs: list[Job], on_result: OnResult) -> None: ...

    def check(self, device: str = "cpu") -> None:
        """Raise, before anything runs or is written, if this engine cannot run jobs on
        ``device``."""


class LocalEngine:
    """Each point in a fresh process (forked from a preloaded server), ``workers`` at once.

    One process per point makes a worker's death attributable to exactly one point. Each
    worker sees the driver's ``sys.path`` and :data:`FORWARDED_VARIABLES` as they are when
    ``run`` is called (the fork server itself may have started earlier). With ``warm`` (the
    default) the fork server also does the studies' first-use work once
    (:mod:`widenet.sweeps.warm`); it takes effect when this process's fork server starts, which
    is at the first local run.
    """

    def __init__(self, workers: int | None = None, retries: int = 2, warm: bool = True):
        _check_counts(workers, retries)
        self.workers = workers or os.cpu_count() or 1
        self.retries = retries
        self.warm = warm

    def check(self, device: str = "cpu") -> None:
        """The workers run on this machine, which must have ``device``."""
        check_device(device, here=True)

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        """Run every job; returns when all have reported. Ctrl-C stops all workers."""
        context = multiprocessing.get_context("forkserver")
        # the fork server imports what the jobs need and does their first-use work once, so
        # each worker starts warm (widenet.sweeps.warm)
        context.set_forkserver_preload(["widenet", *sorted({job.function.__module__
                                                            for job in jobs}),
                                        *(["widenet.sweeps.warm"] if self.warm else [])])
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # no oversubscribed cores
        setup = (threads, _forwarded_environment(), list(sys.path))
        waiting = [(job, 0) for job in jobs]
        active: dict[Connection, tuple[Job, int, Any]] = {}
        try:
            while waiting or active:
                while waiting and len(active) < self.workers:
                    job, attempt = waiting.pop(0)
                    try:
                        payload = pickle.dumps(job)
                    except Exception as error:  # whatever pickling the job raises
                        on_result(job, Outcome("failed", reason=f"the job cannot be sent to a "
                                               f"worker: {type(error).__name__}: {error}"))
                        continue
                    resource_tracker.ensure_running()  # before: starting it unblocks SIGINT
                    with _ctrl_c_deferred():
                        receiver, sender = context.Pipe(duplex=False)
                        process = context.Process(target=_child,
                                                  args=(sender, payload, *setup), daemon=True)
                        process.start()
                        sender.close()
                        active[receiver] = (job, attempt, process)
                for receiver in wait(list(active)):
                    job, attempt, process = active.pop(receiver)
                    outcome = _receive(receiver)
                    receiver.close()
                    process.join()
                    if outcome is not None:
                        on_result(job, outcome)
                    elif attempt < self.retries:
                        waiting.append((job, attempt + 1))
                    else:
                        on_result(job, Outcome("lost", reason=f"worker died (exit code "
                                               f"{process.exitcode}) {attempt + 1} times"))
        finally:
            with _ctrl_c_deferred():  # the workers ignore Ctrl-C: a second one must not leave
                for _, _, process in active.values():  # some of them running
                    process.kill()
            for _, _, process in active.values():
                process.join()


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while a worker starts or the workers are killed, and deliver
    it after. The resource tracker must be running before (starting it unblocks SIGINT).

    Ctrl-C reaches the whole process group, but only the driver handles it (stopping the
    workers; a second Ctrl-C does not cut that short, which would leave workers running). A
    start is never cut in the middle of its exchange with the fork server (which then prints a
    traceback): SIGINT stays pending until the start is done. In the main thread SIGINT is also
    ignored meanwhile, and the fork server, which the first start launches, and every worker it
    forks inherit that, so none of them prints a traceback either. The first start waits for
    the fork server's imports, so Ctrl-C takes effect once they are done.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = (signal.getsignal(signal.SIGINT)  # None: set outside Python, left alone
               if threading.current_thread() is threading.main_thread() else None)
    if handler is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _check_counts(workers: int | None, retries: int) -> None:
    """Refuse ``workers`` < 1 (None means all cores) and ``retries`` < 0."""
    if workers is not None and workers < 1:
        raise WidenetError(f"--workers must be a positive number of parallel workers, got "
                           f"{workers}; leave it out to use all cores")
    if retries < 0:
        raise WidenetError(f"retries must be >= 0 (0: never retry a lost worker), got {retries}")


def _receive(receiver: Connection) -> Outcome | None:
    """The outcome a worker sent, or None if it died before sending all of it."""
    try:
        payload = receiver.recv_bytes()
    except (EOFError, OSError):  # no message, or one cut short by the worker's death
        return None
    try:
        return pickle.loads(payload)
    except Exception as error:  # whatever unpickling raises
        return Outcome("failed", reason=f"the result cannot be read back: "
                                        f"{type(error).__name__}: {error}")


def _child(sender: Connection, payload: bytes, threads: int, environment: dict[str, str],
           path: list[str]) -> None:
    """Run the pickled job with ``threads`` torch threads, the driver's forwarded
    ``environment`` and import ``path``, and send its pickled outcome to the driver."""
    import torch  # here, not with the module: a sweep's --dry-run plans without torch

    torch.set_num_threads(threads)
    for name in FORWARDED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(environment)
    sys.path[:] = path
    try:
        job: Job = pickle.loads(payload)
        outcome = Outcome("done", result=job.function(*job.args))
    except Exception as error:
        outcome = Outcome("failed", reason=f"{type(error).__name__}: {error}")
    sender.send_bytes(_pickled(outcome))
    sender.close()


def _pickled(outcome: Outcome) -> bytes:
    """``outcome`` as bytes; one whose result cannot be pickled becomes a failure saying so."""
    try:
        return pickle.dumps(outcome)
    except Exception as error:  # whatever pickling the result raises
        return pickle.dumps(Outcome("failed", reason=f"the result cannot be sent back: "
                                                     f"{type(error).__name__}: {error}"))


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``: the one remote function every Ray job runs."""
    return function(*args)


class RayEngine:
    """Each point a Ray task with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.

    With ``address`` it joins that cluster (``"auto"``, ``"ray://host:10001"``, ...); without,
    it starts a local Ray instance with ``workers`` CPUs and stops it afterwards. Ray retries a
    task whose worker died ``retries`` times; after that the point is reported lost.
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, retries: int = 2):
        _check_counts(workers, retries)
        if not (math.isfinite(cpus_per_run) and cpus_per_run > 0):
            raise WidenetError(f"cpus_per_run must be a positive number, got {cpus_per_run}")
        if not (math.isfinite(gpus_per_run) and gpus_per_run >= 0):
            raise WidenetError(f"--gpus-per-run must be a finite number >= 0, got "
                               f"{gpus_per_run}")
        self.address, self.workers = address, workers
        self.cpus_per_run, self.gpus_per_run, self.retries = cpus_per_run, gpus_per_run, retries

    def check(self, device: str = "cpu") -> None:
        """The device's name only (the tasks may run on other machines, which may have it), and
        that something listens at a ``host:port`` address."""
        check_device(device, here=False)
        _check_reachable(self.address)

    def _check_local_gpus(self, ray: Any) -> None:
        """Refuse GPUs per run that a local instance does not have (Ray would wait forever)."""
        have = ray.cluster_resources().get("GPU", 0.0)
        if self.gpus_per_run > have:
            ray.shutdown()
            raise WidenetError(f"--gpus-per-run {self.gpus_per_run:g} but this machine has "
                               f"{have:g} GPU(s) for Ray; use --address for a cluster with GPUs")

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        """Run every job on Ray; returns when all have reported. Ctrl-C cancels the rest."""
        try:
            import ray
        except ImportError:
            raise WidenetError("the ray engine needs Ray: pip install 'widenet[ray]'") from None
        started = not ray.is_initialized()
        if started:
            options: dict[str, Any] = {"runtime_env": {"env_vars": _forwarded_environment()},
                                       "include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                options["num_cpus"] = self.workers or os.cpu_count()
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"the Ray cluster at {self.address}" if self.address else "local Ray"
                raise WidenetError(f"cannot start or reach {where}: {error}") from None
            if self.address is None:
                self._check_local_gpus(ray)
        remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                            max_retries=self.retries)(_call)
        pending = {remote.remote(job.function, *job.args): job for job in jobs}
        try:
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready)
                try:
                    outcome = Outcome("done", result=ray.get(ready))
                except ray.exceptions.RayTaskError as error:
                    cause = error.cause
                    outcome = Outcome("failed", reason=f"{type(cause).__name__}: {cause}")
                except ray.exceptions.RayError as error:
                    outcome = Outcome("lost", reason=f"worker lost after {self.retries} "
                                                     f"retries: {type(error).__name__}")
                on_result(job, outcome)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


_HOST_PORT = re.compile(r"(?:ray://)?(\[[^\]]+\]|[^/:\[\]]+):(\d+)")


def _check_reachable(address: str | None) -> None:
    """Refuse a ``host:port`` or ``ray://host:port`` address where nothing listens (Ray itself
    would wait for it for minutes); ``auto`` and other forms are left to Ray."""
    match = _HOST_PORT.fullmatch(address or "")
    if not match:
        return
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or error
        raise WidenetError(f"cannot reach a Ray cluster at {address}: {reason}; check "
                           "--address, or leave it out to start a local Ray instance") from None
