"""Peak memory of a process and all its descendants, sampled from /proc (Linux)."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, found, stack = _children(), [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def _rss_kib(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident KiB of one process; (0, 0) once it is gone."""
    values = {"RssAnon:": 0, "RssFile:": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            field = line.split()
            if field and field[0] in values:
                values[field[0]] = int(field[1])
    except OSError:
        pass
    return values["RssAnon:"], values["RssFile:"]


class PeakMemory:
    """Samples, every ``interval`` seconds while in its ``with`` block, the resident memory of
    this process tree: ``anon_gib`` is the peak of the tree's summed anonymous memory (what
    the computation holds), ``file_gib`` the peak of its summed file-backed pages (memory-mapped
    files, shared libraries: reclaimable page cache, counted once per process)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.anon_gib = self.file_gib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            sizes = [_rss_kib(pid) for pid in _descendants(os.getpid())]
            self.anon_gib = max(self.anon_gib, sum(a for a, _ in sizes) / 2**20)
            self.file_gib = max(self.file_gib, sum(f for _, f in sizes) / 2**20)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
