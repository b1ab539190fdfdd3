"""Progress of an iterative solver: a function of (iteration, residual), or a tqdm bar."""

from __future__ import annotations

import sys
from collections.abc import Callable

from widenet.errors import WidenetError

Progress = Callable[[int, float], None]
"""Called after each iteration with (iteration, the largest relative residual or error
estimate over the columns)."""


class Reporter:
    """Forwards progress to a function (``progress`` callable), or to a tqdm bar on a terminal
    (True), or nowhere (False or None: None stands for the solvers' default, False,
    as ``progress=None`` stands for train's, which shows a bar on a terminal)."""

    def __init__(self, progress: bool | Progress | None, total: int, description: str):
        if progress is not None and not isinstance(progress, bool) and not callable(progress):
            raise WidenetError(f"progress must be True, False, None or a function of "
                               f"(iteration, residual), got {progress!r}")
        self._bar = None
        self._function = progress if callable(progress) else None
        if progress is True and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit="pass",
                             file=sys.stderr, leave=False)

    def __call__(self, iteration: int, residual: float) -> None:
        if self._function is not None:
            self._function(iteration, residual)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(residual=f"{residual:.2e}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
