"""Checkpoints of a training run: where and how often, what defines the run, safe files.

A checkpoint file is one dict of plain data, written atomically (a temporary file of the write's
own, then a rename) and read with ``torch.load(weights_only=True)``, so loading a file never
runs code from it:

    format       "widenet-train-checkpoint", version 3 (version 2 files, without ``rng``, are
                 resumed without it; version 1 kept monitor columns in rows and is refused)
    fingerprint  {aspect: description} of what defines the run (see :func:`fingerprint`)
    step         the number of optimizer steps taken
    model        the model's state_dict (parameters and buffers, tensors)
    optimizer    the torch optimizer's state_dict (momentum buffers, Adam moments, groups)
    sampler      where the batches are: the minibatch generator's state, the epoch's order and
                 the position in it; for a loader, its generator's state when the pass began
                 and the batches taken in the pass (widenet.dynamics.batches)
    rows         the History rows logged so far (dicts of numbers)
    measurements {monitor name: its measurement rows so far}
    initial_loss the full-batch loss at step 0 (the divergence reference)
    monitors     each monitor's state_dict
    rng          torch's global random state: {"cpu": torch.get_rng_state(), "cuda": the
                 run's CUDA device's state, or None on the CPU}, which dropout layers and
                 monitors draw from, so that a resumed run draws the same numbers

Only tensors, numbers, strings, booleans, None, lists, tuples and dicts are stored; anything
else (a monitor state holding another object) is refused when the checkpoint is written.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from widenet.dynamics.monitor import Monitor
from widenet.errors import WidenetError
from widenet.files import atomic_write
from widenet.validation import positive_int

FORMAT, VERSION = "widenet-train-checkpoint", 3
_KEYS = {"format", "version", "fingerprint", "step", "model", "optimizer", "sampler", "rows",
         "measurements", "initial_loss", "monitors", "rng"}
_KEYS_OF = {2: _KEYS - {"rng"}, 3: _KEYS}  # the versions read, and their keys
_CUT = 80  # characters of a setting shown in an error message


@dataclass(frozen=True)
class Checkpoint:
    """Write the run state to ``path`` every ``every`` optimizer steps; with ``resume`` continue
    from ``path`` when it exists (the resumed run ends exactly where an uninterrupted one would
    have). ``train(checkpoint="run.pt")`` means ``Checkpoint("run.pt")``."""

    path: Path  # a str or os.PathLike is accepted and stored as a Path
    every: int = 100
    resume: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.path, str | os.PathLike) or not str(self.path):
            raise WidenetError(f"checkpoint path must be a non-empty str or Path, got "
                               f"{self.path!r}")
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "every", positive_int(self.every, "checkpoint every"))
        if not isinstance(self.resume, bool):
            raise WidenetError(f"checkpoint resume must be True or False, got {self.resume!r}")


def checkpoint_spec(value: object) -> Checkpoint | None:
    """``train``'s ``checkpoint=`` argument as a Checkpoint (a path means the defaults), with a
    location where the file can be written: its folder is a folder, or can become one, and a
    non-empty file already there (which a fresh run replaces) is a widenet training
    checkpoint; an empty one (as ``tempfile.mkstemp`` makes) holds no run, see :func:`saved`."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        value = Checkpoint(value)
    if not isinstance(value, Checkpoint):
        raise WidenetError(f"checkpoint must be a path or a Checkpoint(path, every=..., "
                           f"resume=...), got {type(value).__name__}")
    path = value.path
    if path.is_dir():
        raise WidenetError(f"checkpoint {path} is a folder; give a file path such as "
                           f"{path / 'run.pt'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise WidenetError(f"checkpoint {path} cannot be written: {parent} is a file, "
                                   "not a folder; choose a path inside a folder")
            break
    if not value.resume and saved(path) and not _is_checkpoint(path):
        raise WidenetError(f"checkpoint {path} is a file that is not a widenet training "
                           "checkpoint, which this run would replace; delete it or choose "
                           "another path")
    return value


def saved(path: Path) -> bool:
    """Whether ``path`` is a non-empty file: one a run resumes from, or must not replace unless
    it is a checkpoint. An empty file holds no work (checkpoints are written whole, by a
    rename), so a run starts afresh and replaces it."""
    return path.is_file() and path.stat().st_size > 0


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a widenet training checkpoint (of any version and run)."""
    try:
        content = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # any failure to read it means: not a checkpoint
        return False
    return isinstance(content, dict) and content.get("format") == FORMAT


def fingerprint(model: nn.Module, data: Mapping[str, torch.Tensor | None], loss: object,
                optimizer: Mapping[str, object], settings: Mapping[str, object],
                monitors: Sequence[Monitor]) -> dict[str, object]:
    """What defines a run, as {aspect: description}: the model's structure (module types,
    parameter and buffer names, shapes and dtypes), a SHA-256 of each data tensor's bytes (with
    its dtype and shape), the loss, the optimizer's description (``Updates.description``: a
    spec's name, momentum, batch size and gradient scaling, or a torch optimizer's class and
    group settings), the other ``settings`` (lr, seed, ...) and the monitors (type and
    cadence). Not the values of the parameters and buffers: the checkpoint holds them, and
    every reference taken from the initial ones (a LazyModel's w_0, a LinearizedModel's
    theta_0, both buffers; the monitors' theta_0, K_0, f_0 in their state), so a resumed run
    continues the checkpointed one exactly whatever the model it is given holds (built anew,
    or from another seed)."""
    modules = [f"{name or '<root>'}: {_qualified(type(module))}"
               for name, module in model.named_modules()]
    tensors = [f"{name}: {tensor.dtype} {tuple(tensor.shape)}"
               for name, tensor in (*model.named_parameters(), *model.named_buffers())]
    return {
        "model": modules + tensors,
        **{name: "none" if tensor is None else _digest(tensor) for name, tensor in data.items()},
        "loss": loss if isinstance(loss, str) else _qualified(loss),
        **optimizer,
        **{name: repr(value) for name, value in settings.items()},
        "monitors": [f"{_qualified(type(m))}(every={m.every!r})" for m in monitors],
    }


def save_checkpoint(path: Path, state: Mapping[str, object], run: Mapping[str, object]) -> None:
    """Write ``state`` (the keys of the module docstring, less format and fingerprint) with the
    run's fingerprint ``run`` to ``path`` atomically."""
    content = _plain({"format": FORMAT, "version": VERSION, "fingerprint": run, **state},
                     "checkpoint")
    try:  # a temporary file of its own: writers of one path at once each leave a whole file
        atomic_write(path, lambda file: torch.save(content, file))
    except (OSError, RuntimeError) as error:  # Ctrl-C passes: atomic_write leaves no temporary
        # A folder that cannot be written raises an OSError; torch.save reports a failed write
        # (a full disk) as a RuntimeError; the content is plain data, so nothing else it
        # raises is expected.
        raise WidenetError(f"could not write checkpoint {path}: {_first_line(error, False)}; "
                           "choose a path in a folder you can write to") from error


def load_checkpoint(path: Path, run: Mapping[str, object], model: nn.Module, steps: int,
                    device: torch.device, sampler_keys: frozenset[str]) -> dict:
    """The checkpoint at ``path``, checked to belong to the run fingerprinted ``run`` (same
    model, data, loss, optimizer, settings and monitors) and to be at most ``steps`` steps in;
    tensors are mapped to ``device``; its sampler part must have ``sampler_keys``. Raises
    WidenetError saying what differs."""
    try:
        content = torch.load(path, weights_only=True, map_location=device)
    except Exception as error:  # any failure to read the file means: not a usable checkpoint
        raise WidenetError(f"checkpoint {path} cannot be read as a widenet checkpoint (damaged, "
                           "from another program, or holding objects other than tensors, "
                           "numbers, strings, lists and dicts, which are never loaded): "
                           f"{_first_line(error)}; delete it or choose another path") from error
    version = content.get("version") if isinstance(content, dict) else None
    keys = _KEYS_OF.get(version) if isinstance(version, int) else None  # a list: unhashable
    if not isinstance(content, dict) or content.get("format") != FORMAT or set(content) != keys:
        raise WidenetError(f"checkpoint {path} is not a widenet training checkpoint (version "
                           f"{' or '.join(map(str, _KEYS_OF))}); delete it or choose another "
                           "path")
    content.setdefault("rng", None)  # version 2: no random state to restore
    differences = _differences(content["fingerprint"], run)
    if differences:
        raise WidenetError(f"checkpoint {path} belongs to a different run ({'; '.join(differences)}"
                           "); resume with that run's model, data and settings, or give a new "
                           "checkpoint path to start afresh")
    step = content["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise WidenetError(f"checkpoint {path} is damaged: its step is {step!r}")
    if step > steps:
        raise WidenetError(f"checkpoint {path} is {step} steps into the run but steps={steps} "
                           f"were asked; resume with steps >= {step}, or give a new checkpoint "
                           "path")
    _check_parts(path, content, model, sampler_keys, device)
    return content


def _check_parts(path: Path, content: dict, model: nn.Module, sampler_keys: frozenset[str],
                 device: torch.device) -> None:
    """Check the parts have the types and the model's tensors (and the random state the sizes
    of this run's generators) before anything is restored, so a damaged file leaves the run
    untouched."""
    expected = model.state_dict()
    saved = content["model"]
    shapes_match = isinstance(saved, dict) and set(saved) == set(expected) and all(
        isinstance(saved[k], torch.Tensor) and saved[k].shape == v.shape
        for k, v in expected.items())
    sampler = content["sampler"]
    parts_ok = (isinstance(content["optimizer"], dict) and isinstance(content["rows"], list)
                and all(isinstance(row, dict) for row in content["rows"])
                and isinstance(content["monitors"], list)
                and isinstance(content["measurements"], dict)
                and all(isinstance(rows, list) for rows in content["measurements"].values())
                and isinstance(content["initial_loss"], float)
                and isinstance(sampler, dict)
                and set(sampler) == sampler_keys
                and _is_random_state(content["rng"], device))
    if not (shapes_match and parts_ok):
        raise WidenetError(f"checkpoint {path} is damaged (its parts do not have the expected "
                           "types or the model's tensors); delete it or choose another path")


def random_state(device: torch.device) -> dict[str, torch.Tensor | None]:
    """torch's global random state: the CPU generator's, and ``device``'s when it is a GPU."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_random_state(state: dict[str, torch.Tensor | None] | None,
                         device: torch.device) -> None:
    """Set torch's global random state to ``state`` (from :func:`random_state`); None (a
    version 2 checkpoint) and a GPU state without a GPU run leave it as it is."""
    if state is None:
        return
    torch.set_rng_state(state["cpu"].cpu())
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _is_random_state(state: object, device: torch.device) -> bool:
    """Whether ``state`` is None or what :func:`random_state` returns, each generator's state a
    uint8 tensor of the size of this run's generator on ``device`` (torch refuses another
    size); a GPU state on a CPU run, which ignores it, need only be a uint8 tensor."""
    if state is None:
        return True
    if not isinstance(state, dict) or set(state) != {"cpu", "cuda"} or state["cpu"] is None:
        return False
    current = random_state(device)
    return all(part is None or (isinstance(part, torch.Tensor) and part.dtype == torch.uint8
                                and (current[key] is None or part.shape == current[key].shape))
               for key, part in state.items())


def _differences(saved: object, current: Mapping[str, object]) -> list[str]:
    """A short description of each aspect in which the two fingerprints differ."""
    if not isinstance(saved, dict):
        return ["the checkpoint has no fingerprint"]
    found = []
    for aspect in [*current, *(key for key in saved if key not in current)]:
        there, here = saved.get(aspect, "nothing"), current.get(aspect, "nothing")
        if there == here:
            continue
        if isinstance(there, list) and isinstance(here, list):  # show the first difference
            index = next((i for i, (a, b) in enumerate(zip(there, here, strict=False))
                          if a != b), min(len(there), len(here)))
            there = there[index] if index < len(there) else "nothing"
            here = here[index] if index < len(here) else "nothing"
        found.append(f"{aspect}: {_cut(there)} in the checkpoint, {_cut(here)} here")
    return found


def _plain(value: object, where: str) -> object:
    """``value`` as tensors, numbers, strings, booleans, None, lists, tuples and dicts (numpy
    scalars become Python numbers, mappings plain dicts); anything else is refused."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, tuple):  # torch.Size and named tuples too: a plain tuple
        return tuple(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, list):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise WidenetError(f"{where} would hold a {type(value).__name__}; a checkpoint holds only "
                       "tensors, numbers, strings, lists and dicts (make monitors' state_dict "
                       "return those)")


def _digest(tensor: torch.Tensor) -> str:
    """dtype, shape and the SHA-256 of the tensor's bytes."""
    data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return f"{tensor.dtype} {tuple(tensor.shape)} sha256:{hashlib.sha256(data).hexdigest()}"


def _qualified(thing: object) -> str:
    name = getattr(thing, "__qualname__", None) or type(thing).__qualname__
    return f"{getattr(thing, '__module__', None) or type(thing).__module__}.{name}"


def _cut(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _CUT else text[:_CUT - 3] + "..."


def _first_line(error: BaseException, cut: bool = True) -> str:
    """The error message's first line (shortened to the length of a setting with ``cut``)."""
    lines = str(error).strip().splitlines()
    return (_cut(lines[0]) if cut else lines[0]) if lines else type(error).__name__

