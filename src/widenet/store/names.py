"""Names that become paths under a store: run ids and sweep names must be plain file names.

A run id becomes the folder ``<store>/<run id>`` and a sweep name the folder
``<store>/sweeps/<name>``. Both are checked every time they are read or made, so that a
damaged or hand-edited ``runs.db`` can never make widenet read or write outside its store.
"""

from __future__ import annotations

import re

from widenet.errors import WidenetError

MAX_SWEEP_NAME = 100
"""The longest sweep name: it is also the name of a folder under ``<store>/sweeps``."""

MAX_SHOWN = 60
"""How many characters of a bad name an error message shows."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RUN_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}-\d{6}-[0-9a-f]{4}")
"""The shape of the ids :meth:`RunStore.new_run_id` makes (and so of run folders)."""


def shown(name: str) -> str:
    """``name`` quoted for an error message, cut to :data:`MAX_SHOWN` characters."""
    return repr(name) if len(name) <= MAX_SHOWN else repr(name[:MAX_SHOWN]) + "..."


def check_run_id(run_id: object, where: str) -> str:
    """``run_id`` if it is a plain name (a letter or digit, then letters, digits, ``.``, ``_``
    or ``-``: no ``/``, ``\\``, NUL, ``..`` or absolute path, not empty); raises otherwise,
    naming ``where`` the id came from and saying that nothing was read or written there."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        text = shown(run_id) if isinstance(run_id, str) else repr(run_id)
        raise WidenetError(f"the run id {text} from {where} is not a plain name (letters, "
                           "digits, '.', '_', '-'; no '/', '\\' or '..') and could point "
                           "outside the store, so nothing was read or written at that path")
    return run_id


def check_sweep_name(name: str) -> str:
    """``name`` if it can name a sweep (and its folder ``<store>/sweeps/<name>``): letters,
    digits, ``.``, ``_`` and ``-`` only, at most :data:`MAX_SWEEP_NAME` characters, and not
    ``.`` or ``..``; raises otherwise, so that a report never lands outside the store."""
    if (not _PLAIN_NAME.fullmatch(name) or name in (".", "..")
            or len(name) > MAX_SWEEP_NAME):
        raise WidenetError(f"bad sweep name {shown(name)}: use up to {MAX_SWEEP_NAME} letters, "
                           "digits, '.', '_' or '-' (no '/', spaces or '..')")
    return name
