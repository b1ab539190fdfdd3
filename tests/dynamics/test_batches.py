"""Training from a DataLoader or a list of batches: the same updates as a hand-written loop,
epochs of len(loader) steps, the whole set for the logged loss, resume in the same order."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

import widenet as wn
from widenet.diagnostics.builtin import LinearizationMonitor
from widenet.dynamics.checkpoint import Checkpoint
from widenet.dynamics.losses import mse
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import Optimizer
from widenet.dynamics.train import train


def regression(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1, keepdim=True))


def net(seed: int = 0) -> wn.MLP:
    return wn.MLP(4, [16], 1, "tanh", seed=seed, dtype=torch.float64)


def loader(x: torch.Tensor, y: torch.Tensor, seed: int | None = 3, **kwargs) -> DataLoader:
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, generator=generator,
                      **kwargs)


def hand_written(model: torch.nn.Module, batches: DataLoader | list, steps: int, lr: float,
                 momentum: float = 0.0) -> list[float]:
    """SGD on the mse of each batch, pass after pass; the batch losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses: list[float] = []
    while len(losses) < steps:
        for xb, yb in batches:
            if len(losses) == steps:
                break
            optimizer.zero_grad()
            loss = 0.5 * (model(xb) - yb).square().sum() / xb.shape[0]
            losses.append(float(loss.detach()))
            loss.backward()
            optimizer.step()
    return losses


def test_dataloader_sgd_equals_a_hand_written_loop() -> None:
    """17 steps of a shuffled loader of 7 batches (40 points, the last batch 4): two passes and
    three batches of a third, in the loader's own order; the logged loss is the whole set's."""
    x, y = regression()
    model, reference = net(), net()
    result = train(model, loader(x, y), lr=0.2, steps=17, log_every=7,
                   optimizer=Optimizer("sgd", momentum=0.5), progress=False)
    hand_written(reference, loader(x, y), 17, 0.2, momentum=0.5)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-14)
    assert list(result.history["step"]) == [0, 7, 14, 17]
    with torch.no_grad():
        assert result.history["loss"].iloc[-1] == pytest.approx(float(mse(model(x), y)),
                                                                rel=1e-12)


def test_a_list_of_batches_and_the_default_optimizer() -> None:
    """optimizer='gd' with a loader steps on its batches (plain SGD, named 'sgd' for the
    monitors); a list of (x, y) pairs is re-read pass after pass."""
    x, y = regression(n=12)
    batches = [(x[:5], y[:5]), (x[5:], y[5:])]
    model, reference = net(), net()
    train(model, batches, lr=0.3, steps=5, progress=False)
    hand_written(reference, batches, 5, 0.3)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=1e-14)
    with pytest.raises(wn.WidenetError, match="full-batch GD"):
        train(net(), batches, lr=0.3, steps=1, monitors=[LinearizationMonitor()])


def test_the_monitors_see_the_whole_training_set() -> None:
    x, y = regression(n=20)
    seen = {}

    class Looking(Monitor):
        name = "looking"

        def measure(self, state: RunState) -> dict[str, float]:
            seen["x"], seen["optimizer"] = state.x, state.optimizer
            return {"points": float(state.x.shape[0])}

    train(net(), loader(x, y, drop_last=True), lr=0.1, steps=2, monitors=[Looking()])
    assert torch.equal(seen["x"], x)  # in the dataset's order, the dropped tail included
    assert seen["optimizer"] == "sgd"


class Interrupt(Monitor):
    name = "interrupt"

    def __init__(self, at: int | None = None):
        self.at = at

    def measure(self, state: RunState) -> dict[str, float]:
        if state.step == self.at:
            raise KeyboardInterrupt
        return {"sum": sum(float(p.detach().sum()) for p in state.model.parameters())}


def test_a_seeded_shuffling_loader_resumes_in_the_same_order(tmp_path) -> None:
    """Interrupted at step 15 with a checkpoint at step 10 (three batches into the second
    pass), the resumed run ends identical to an uninterrupted one."""
    x, y = regression()
    kwargs = {"lr": 0.1, "steps": 20, "log_every": 5, "progress": False,
              "optimizer": Optimizer("sgd", momentum=0.9)}
    whole = net()
    expected = train(whole, loader(x, y), monitors=[Interrupt()], **kwargs)
    with pytest.raises(KeyboardInterrupt):
        train(net(), loader(x, y), monitors=[Interrupt(at=15)],
              checkpoint=Checkpoint(tmp_path / "c.pt", every=10), **kwargs)
    resumed_net = net(seed=5)
    resumed = train(resumed_net, loader(x, y, seed=99), monitors=[Interrupt()],
                    checkpoint=Checkpoint(tmp_path / "c.pt", every=10, resume=True), **kwargs)
    for p, q in zip(whole.parameters(), resumed_net.parameters(), strict=True):
        assert torch.equal(p, q)
    assert resumed.history.equals(expected.history)
    assert resumed.measurements["interrupt"].equals(expected.measurements["interrupt"])


def test_a_resumed_loader_run_names_a_bad_batch_by_its_step_in_the_whole_run(tmp_path) -> None:
    """The loader's 7th batch (step 6: 40 points in batches of 6 leave 4) is not a pair: a run
    resumed from step 5 names it by train's step in the whole run, not by its place after the
    resume."""
    x, y = regression()

    def unshuffled() -> DataLoader:
        return DataLoader(TensorDataset(x, y), batch_size=6,
                          collate_fn=lambda items: default_collate(items) if len(items) == 6
                          else "a short batch")

    kwargs = {"lr": 0.1, "progress": False}
    train(net(), unshuffled(), steps=5, checkpoint=Checkpoint(tmp_path / "c.pt", every=5),
          **kwargs)
    with pytest.raises(wn.WidenetError, match="the loader's batch at step 6 is a str"):
        train(net(), unshuffled(), steps=10,
              checkpoint=Checkpoint(tmp_path / "c.pt", every=5, resume=True), **kwargs)


def test_a_loader_whose_order_cannot_be_resumed_is_refused_with_a_checkpoint(tmp_path) -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="seeded generator"):
        train(net(), loader(x, y, seed=None), lr=0.1, steps=2,
              checkpoint=Checkpoint(tmp_path / "c.pt"))
    train(net(), loader(x, y, seed=None), lr=0.1, steps=2)  # without a checkpoint: fine
    assert not (tmp_path / "c.pt").exists()
    unshuffled = DataLoader(TensorDataset(x, y), batch_size=8)
    train(net(), unshuffled, lr=0.1, steps=2, checkpoint=Checkpoint(tmp_path / "c.pt", 1))
    assert (tmp_path / "c.pt").exists()


def test_bad_loaders() -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="leave y out"):
        train(net(), loader(x, y), y, lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="one-pass"):
        train(net(), iter([(x, y)]), lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match=r"not an \(x, y\) pair"):
        train(net(), [x, x], lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="no batch"):
        train(net(), [], lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match="leave the Optimizer's batch_size"):
        train(net(), loader(x, y), lr=0.1, steps=1, optimizer=Optimizer("sgd", batch_size=4))
    with pytest.raises(wn.WidenetError, match="give the targets y"):
        train(net(), x, lr=0.1, steps=1)
    with pytest.raises(wn.WidenetError, match=r"x must be a torch\.Tensor"):
        train(net(), x.numpy(), y, lr=0.1, steps=1)  # an array with y: not a loader


def test_an_empty_batch_is_refused_not_reported_as_a_divergence() -> None:
    """Its mean loss is 0/0 = NaN, which the loop would read as a diverged run."""
    x, y = regression()
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(wn.WidenetError, match=r"batch 1 of the loader is empty \(x of shape "
                       r"\(0, 4\)\); give batches of at least one point"):
        train(model, [(x[:6], y[:6]), (x[:0], y[:0])], lr=0.1, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_a_subset_sampler_gathers_only_its_points() -> None:
    """A train / validation split through a sampler: the training set (the logged loss, the
    monitors' probe) is the sampler's points, not the whole dataset."""
    from torch.utils.data import SubsetRandomSampler

    from widenet.dynamics.batches import gathered

    x, y = torch.arange(36.0).reshape(12, 3), torch.arange(12.0)[:, None]
    train_points = [0, 3, 5, 8]
    loader = DataLoader(TensorDataset(x, y), batch_size=2,
                        sampler=SubsetRandomSampler(train_points,
                                                    generator=torch.Generator().manual_seed(0)))
    xs, ys = gathered(loader)
    assert sorted(ys.flatten().tolist()) == [float(i) for i in train_points]
    assert xs.shape == (4, 3)
    full_x, _ = gathered(DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True))
    assert full_x.shape == (12, 3)
