"""Where each training step's batch comes from: tensors shuffled by a seed, or a DataLoader.

``train(model, x, y)`` draws minibatches from the tensors with :class:`TensorBatches` (epochs of a
permutation from a generator seeded by ``seed``; the whole set when the batch is the whole set).
``train(model, loader)`` takes step s's batch from :class:`LoaderBatches`: the next (x, y) of the
loader (a ``torch.utils.data.DataLoader`` or any re-iterable of (x, y) pairs, such as a list);
when a pass ends, the next begins, so one epoch is ``len(loader)`` steps.

The training set (for the logged full-batch loss and for the monitors) is, for a loader,
gathered once before training by :func:`gathered`: a DataLoader's dataset in index order (its
tensors for a TensorDataset, else ``collate_fn`` of every item), or the concatenation of one
pass over any other iterable, with the random state restored afterwards so that the pass
changes nothing.

Resuming a loader run (:meth:`LoaderBatches.state_dict`) restores the loader's generator to
its state when the interrupted epoch began and skips the batches already taken: the batches
then follow exactly as in an uninterrupted run when the loader's order depends on nothing but
its generator: no shuffling, or ``shuffle=True`` with ``generator=`` a seeded
``torch.Generator``; and for a list of batches. :func:`check_resumable` refuses the others
when a checkpoint is asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from widenet.errors import WidenetError

Batch = tuple[torch.Tensor, torch.Tensor]


class TensorBatches:
    """Minibatch indices: epochs of a permutation drawn from a seeded generator, each
    floor(n / batch) consecutive batches of it (the n mod batch points left sit it out)."""

    KEYS = frozenset({"generator", "order", "position"})

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, seed: int):
        self.x, self.y, self.n, self.batch = x, y, x.shape[0], batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.arange(self.n)
        self.position = self.n

    def next(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Step ``step``'s batch (x_b, y_b), the next of the epoch, and whether it is the whole
        training set."""
        if self.batch == self.n:
            return self.x, self.y, True
        if self.position + self.batch > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        indices = self.order[self.position:self.position + self.batch]
        self.position += self.batch
        return self.x[indices], self.y[indices], False

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order,
                "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        # The generator and the order live on the CPU, wherever the checkpoint was mapped.
        self.generator.set_state(state["generator"].cpu())
        self.order, self.position = state["order"].cpu(), state["position"]


class LoaderBatches:
    """Batches from a loader, pass after pass, detached and cast to the model's floating dtype
    and device."""

    KEYS = frozenset({"generator", "position"})

    def __init__(self, loader: Iterable, dtype: torch.dtype, device: torch.device):
        self.loader, self.dtype, self.device = loader, dtype, device
        self.generator = loader.generator if isinstance(loader, DataLoader) else None
        # The generator's state when the current pass began; before the first, its state now.
        self.epoch_start = None if self.generator is None else self.generator.get_state()
        self.iterator: Iterator | None = None
        self.position = 0

    def next(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Step ``step``'s batch: the loader's next (a new pass begins when one ends); never
        the whole set. A batch that is not an (x, y) pair is named by its step."""
        batch = next(self.iterator, None) if self.iterator is not None else None
        if batch is None:
            self._new_pass()
            batch = next(self.iterator, None)
            if batch is None:
                raise WidenetError("the loader yielded no batch; give one with at least one "
                                   "(x, y) batch per pass")
        self.position += 1
        x, y = _pair(batch, f"the loader's batch at step {step}")
        return x.detach().to(self.device, self.dtype), y.detach().to(self.device), False

    def _new_pass(self) -> None:
        if self.generator is not None:
            self.epoch_start = self.generator.get_state()
        self.iterator, self.position = iter(self.loader), 0

    def state_dict(self) -> dict:
        """The generator's state when this pass began (before the first pass: its state when
        training began; None without a generator) and the batches taken in it."""
        return {"generator": self.epoch_start, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Start the interrupted pass again from the same generator state and skip the
        batches it had already given."""
        if state["generator"] is not None and self.generator is not None:
            self.generator.set_state(state["generator"].cpu())
        if state["position"] == 0:  # no pass had begun: the first begins from this state
            self.epoch_start = None if self.generator is None else self.generator.get_state()
            return
        self._new_pass()
        for _ in range(state["position"]):
            if next(self.iterator, None) is None:
                raise WidenetError("the loader gives fewer batches per pass than the "
                                   "checkpointed run took; resume with the same loader")
        self.position = state["position"]


def is_loader(data: object) -> bool:
    """Whether ``train``'s data argument is a loader (anything iterable but a tensor)."""
    return not isinstance(data, torch.Tensor) and isinstance(data, Iterable)


def check_loader(loader: Iterable) -> None:
    """Refuse what cannot be iterated pass after pass (an iterator or generator is used up by
    one pass). Nothing is drawn from the loader: creating its iterator would draw a seed."""
    if isinstance(loader, Iterator):
        raise WidenetError(f"the training data is a one-pass {type(loader).__name__}; give a "
                           "re-iterable source of (x, y) batches such as a DataLoader or a list")


def _covers_the_dataset_once(loader: DataLoader) -> bool:
    """Whether one pass of ``loader`` visits each point of its dataset exactly once (so the
    dataset itself is the training set); a subset sampler (a train / validation split) or one
    with replacement does not, and the set is then gathered from a pass of the loader."""
    if isinstance(loader.dataset, IterableDataset):
        return False
    sampler = loader.sampler
    return type(sampler) is SequentialSampler or (
        type(sampler) is RandomSampler and not sampler.replacement
        and sampler.num_samples == len(loader.dataset))


def gathered(loader: Iterable) -> Batch:
    """The whole training set behind ``loader`` as tensors (x, y): see the module docstring."""
    if isinstance(loader, DataLoader) and _covers_the_dataset_once(loader):
        dataset = loader.dataset
        if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
            return dataset.tensors[0], dataset.tensors[1]
        if len(dataset) == 0:
            raise WidenetError("the DataLoader's dataset is empty")
        return _pair(loader.collate_fn([dataset[i] for i in range(len(dataset))]),
                     "the DataLoader's collated dataset")
    generator = getattr(loader, "generator", None)
    state = None if generator is None else generator.get_state()
    with torch.random.fork_rng(devices=[]):
        batches = [_pair(batch, f"batch {i} of the loader") for i, batch in enumerate(loader)]
    if generator is not None:
        generator.set_state(state)
    if not batches:
        raise WidenetError("the loader yielded no batch; give at least one (x, y) batch")
    try:
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    except RuntimeError as error:
        raise WidenetError("the loader's batches cannot be stacked into one training set "
                           f"({str(error).splitlines()[0][:100]}); give batches whose x and y "
                           "have the same shape after the first dimension") from error


def check_resumable(loader: Iterable) -> None:
    """Refuse a checkpoint for a loader whose order a resumed run could not reproduce."""
    if isinstance(loader, list | tuple):
        return
    if not isinstance(loader, DataLoader):
        raise WidenetError(f"a run from a {type(loader).__name__} cannot be checkpointed: its "
                           "order on resume is unknown; give a DataLoader or a list of batches")
    sampler, batches = loader.sampler, loader.batch_sampler
    if type(batches) is not BatchSampler or isinstance(loader.dataset, IterableDataset):
        raise WidenetError("a DataLoader with a custom batch_sampler or an IterableDataset "
                           "cannot be checkpointed: its order on resume is unknown")
    if type(sampler) is SequentialSampler:
        return
    if type(sampler) is RandomSampler and sampler.generator is not None \
            and sampler.generator is loader.generator:
        return
    raise WidenetError("a shuffling DataLoader is resumed in the same order only with a "
                       "seeded generator: DataLoader(..., shuffle=True, "
                       "generator=torch.Generator().manual_seed(0)) (custom samplers cannot "
                       "be checkpointed)")


def loader_description(loader: Iterable) -> str:
    """What fixes a loader's batches besides its data: batch size, order and dropped tail (part
    of a checkpoint's fingerprint of the run)."""
    if isinstance(loader, list | tuple):
        return f"{type(loader).__name__} of batches of sizes " \
               f"{[len(batch[0]) for batch in loader]}"
    return f"DataLoader(batch_size={loader.batch_size!r}, " \
           f"sampler={type(loader.sampler).__name__}, drop_last={loader.drop_last!r})"


def _pair(batch: object, where: str) -> Batch:
    """``batch`` as a pair of tensors (x, y) with one row per point, at least one point."""
    if not isinstance(batch, tuple | list) or len(batch) != 2 \
            or not all(isinstance(part, torch.Tensor) for part in batch):
        raise WidenetError(f"{where} is a {type(batch).__name__}, not an (x, y) pair of "
                           "tensors; make the loader yield (inputs, targets)")
    x, y = batch
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise WidenetError(f"{where} has x of shape {tuple(x.shape)} and y of shape "
                           f"{tuple(y.shape)}; give one row of each per point")
    if x.shape[0] == 0:  # its mean loss is 0/0: the step would read as a divergence
        raise WidenetError(f"{where} is empty (x of shape {tuple(x.shape)}); give batches of "
                           "at least one point")
    return x, y
