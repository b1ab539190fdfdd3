"""Checkpoints: plain data loaded with weights_only=True, refused when they belong to another
run, are past the requested steps, are damaged or foreign, or cannot be written."""

from __future__ import annotations

import copy
import io
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import widenet as wn
from widenet.diagnostics.builtin import SharpnessMonitor, WeightMovementMonitor
from widenet.dynamics.checkpoint import Checkpoint, save_checkpoint
from widenet.dynamics.losses import mse
from widenet.dynamics.monitor import Monitor, RunState
from widenet.dynamics.optim import LayerPowerScaling, Optimizer
from widenet.dynamics.train import train


def regression(n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x, torch.sin(x.sum(1, keepdim=True))


def net(seed: int = 0, hidden: int = 16) -> wn.MLP:
    return wn.MLP(4, [hidden], 1, "tanh", seed=seed, dtype=torch.float64)


def eight_steps(path, **overrides) -> None:
    """A run of 8 steps that leaves its checkpoint at step 8 in ``path``."""
    x, y = regression()
    arguments = {"lr": 0.1, "steps": 8, "checkpoint": Checkpoint(path, every=4), **overrides}
    train(net(), x, y, **arguments)


class Exploit:
    """Unpickling this object runs code (writes a file): what a hostile checkpoint does."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_checkpoint_is_plain_data_that_loads_with_weights_only(tmp_path) -> None:
    eight_steps(tmp_path / "c.pt", monitors=[WeightMovementMonitor()],
                optimizer=Optimizer("sgd", momentum=0.5))
    content = torch.load(tmp_path / "c.pt", weights_only=True)
    assert content["format"] == "widenet-train-checkpoint"
    assert content["step"] == 8
    assert set(content["model"]) == set(net().state_dict())
    assert [row["step"] for row in content["rows"]] == [0]
    assert isinstance(content["monitors"][0]["initial"], dict)
    assert content["fingerprint"]["lr"] == "0.1"


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path) -> None:
    eight_steps(tmp_path / "c.pt")
    content = torch.load(tmp_path / "c.pt", weights_only=True)
    target = tmp_path / "pwned"
    content["rows"] = [Exploit(str(target))]
    torch.save(content, tmp_path / "c.pt")
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="cannot be read as a widenet checkpoint"):
        train(net(), x, y, lr=0.1, steps=8, checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))
    assert not target.exists()


@pytest.mark.parametrize(("change", "aspect"), [
    ({"lr": 0.2}, "lr: 0.1 in the checkpoint, 0.2 here"),
    ({"loss_scale": 2.0}, "loss_scale"),
    ({"seed": 3}, "seed"),
    ({"log_every": 5}, "log_every"),
    ({"optimizer": "adam"}, "optimizer: gd in the checkpoint, adam here"),
    ({"optimizer": Optimizer("sgd", momentum=0.9)}, "momentum: 0.0 in the checkpoint, 0.9 here"),
    ({"optimizer": Optimizer(gradient_scaling=LayerPowerScaling(2.0))},
     "gradient_scaling: none in the checkpoint, LayerPowerScaling(power=2.0) here"),
    ({"loss": mse}, "loss: mse in the checkpoint, widenet.dynamics.losses.mse here"),
    ({"monitors": [WeightMovementMonitor()]}, "monitors: nothing in the checkpoint"),
    ({"data": regression(seed=1)}, "x: torch.float64 (24, 4) sha256:"),
    ({"data": (regression()[0], -regression()[1])}, "y: "),
    ({"test_data": regression(n=5)}, "test x: none in the checkpoint"),
    ({"model": net(hidden=8)}, "model: layers.0.weight: torch.float64 (16, 4) in the checkpoint, "
                               "layers.0.weight: torch.float64 (8, 4) here"),
    ({"model": wn.MLP(4, [16], 1, "tanh", seed=0)}, "torch.float32"),
])
def test_resuming_another_run_is_refused_naming_the_difference(tmp_path, change: dict,
                                                               aspect: str) -> None:
    eight_steps(tmp_path / "c.pt")
    x, y = change.pop("data", regression())
    model = change.pop("model", net())
    before = copy.deepcopy(model.state_dict())
    arguments = {"lr": 0.1, "steps": 12, "checkpoint": Checkpoint(tmp_path / "c.pt", 4, True),
                 **change}
    with pytest.raises(wn.WidenetError, match="belongs to a different run") as error:
        train(model, x, y, **arguments)
    assert aspect in str(error.value)
    assert "\n" not in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_same_run_resumes_and_may_run_longer(tmp_path) -> None:
    eight_steps(tmp_path / "c.pt")
    x, y = regression()
    model, whole = net(), net()
    resumed = train(model, x, y, lr=0.1, steps=12,
                    checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))
    expected = train(whole, x, y, lr=0.1, steps=12)
    assert resumed.history.equals(expected.history)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), whole.parameters(),
                                                 strict=True))


def test_a_checkpoint_past_the_requested_steps_is_refused(tmp_path) -> None:
    eight_steps(tmp_path / "c.pt")
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="8 steps into the run but steps=4"):
        train(net(), x, y, lr=0.1, steps=4, checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))


@pytest.mark.parametrize("content", [b"garbage, not a checkpoint", b"PK\x03\x04broken zip"])
def test_garbage_files_are_refused(tmp_path, content: bytes) -> None:
    (tmp_path / "c.pt").write_bytes(content)
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="cannot be read as a widenet checkpoint"):
        train(net(), x, y, lr=0.1, steps=4, checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))


@pytest.mark.parametrize("foreign", [
    lambda: net().state_dict(),
    lambda: {"step": 2, "model": net().state_dict()},
    lambda: [1, 2, 3],
])
def test_foreign_torch_files_are_refused(tmp_path, foreign) -> None:
    torch.save(foreign(), tmp_path / "c.pt")
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="not a widenet training checkpoint"):
        train(net(), x, y, lr=0.1, steps=4, checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda content: content["model"].update({"layers.0.weight": torch.zeros(3)}), "is damaged"),
    # torch.set_rng_state refused it with a raw RuntimeError, after the model was restored
    (lambda content: content["rng"].update({"cpu": torch.zeros(7, dtype=torch.uint8)}),
     "is damaged"),
    # an unhashable version raised a raw TypeError
    (lambda content: content.update({"version": [3]}),
     r"not a widenet training checkpoint \(version 2 or 3\)"),
], ids=["model", "random state", "version"])
def test_a_damaged_part_is_refused_before_anything_is_restored(tmp_path, damage,
                                                               message: str) -> None:
    eight_steps(tmp_path / "c.pt")
    content = torch.load(tmp_path / "c.pt", weights_only=True)
    damage(content)
    torch.save(content, tmp_path / "c.pt")
    x, y = regression()
    model = net(seed=1)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(wn.WidenetError, match=message):
        train(model, x, y, lr=0.1, steps=8, checkpoint=Checkpoint(tmp_path / "c.pt", 4, True))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_path_under_a_file_is_refused_before_training(tmp_path) -> None:
    (tmp_path / "file").write_text("not a folder")
    x, y = regression()
    model = net()
    before = copy.deepcopy(model.state_dict())
    for path in (tmp_path / "file" / "c.pt", tmp_path / "file" / "deeper" / "c.pt"):
        with pytest.raises(wn.WidenetError, match="is a file, not a folder"):
            train(model, x, y, lr=0.1, steps=8, checkpoint=Checkpoint(path, every=4))
    with pytest.raises(wn.WidenetError, match="is a folder"):
        train(model, x, y, lr=0.1, steps=8, checkpoint=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("resume", [False, True])
def test_an_empty_file_holds_no_work_and_is_replaced(tmp_path, resume: bool) -> None:
    with tempfile.NamedTemporaryFile(dir=tmp_path, suffix=".pt", delete=False) as file:
        path = Path(file.name)
    assert path.stat().st_size == 0
    x, y = regression()
    model, reference = net(), net()
    result = train(model, x, y, lr=0.1, steps=8, checkpoint=Checkpoint(path, 4, resume))
    expected = train(reference, x, y, lr=0.1, steps=8)
    assert result.history.equals(expected.history)
    assert torch.load(path, weights_only=True)["step"] == 8


@pytest.mark.parametrize("foreign", [b"the user's notes", None])
def test_a_fresh_run_never_replaces_a_file_that_is_not_a_checkpoint(tmp_path, foreign) -> None:
    path = tmp_path / "c.pt"
    if foreign is None:
        torch.save(net().state_dict(), path)
    else:
        path.write_bytes(foreign)
    before = path.read_bytes()
    x, y = regression()
    with pytest.raises(wn.WidenetError, match="not a widenet training checkpoint, which this run"):
        train(net(), x, y, lr=0.1, steps=8, checkpoint=Checkpoint(path, every=4))
    assert path.read_bytes() == before
    eight_steps(tmp_path / "old.pt")  # a checkpoint (of any run) is replaced by a fresh run
    train(net(seed=1), x, y, lr=0.2, steps=4, checkpoint=Checkpoint(tmp_path / "old.pt", 4))
    assert torch.load(tmp_path / "old.pt", weights_only=True)["step"] == 4


def test_an_interrupted_write_leaves_the_last_checkpoint_and_no_temporary_file(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    eight_steps(tmp_path / "c.pt")
    before = (tmp_path / "c.pt").read_bytes()

    def interrupted(content: object, file: io.BufferedWriter) -> None:
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        eight_steps(tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert (tmp_path / "c.pt").read_bytes() == before


def test_writers_of_one_path_at_once_each_replace_it_whole(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second write of the path begins and ends while the first is writing (the same run
    started twice): they shared one temporary file, so the first wrote into the file the
    second had renamed into place (a damaged checkpoint) and its own rename failed."""
    path = tmp_path / "c.pt"
    plain_save = torch.save

    def interleaved(content: object, file: io.BufferedWriter) -> None:
        monkeypatch.setattr(torch, "save", plain_save)
        save_checkpoint(path, {"who": "second", "more": torch.zeros(1000)}, {})
        plain_save(content, file)

    monkeypatch.setattr(torch, "save", interleaved)
    save_checkpoint(path, {"who": "first"}, {})
    assert torch.load(path, weights_only=True)["who"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder in which no file can be created: a read-only one, or (for root, who ignores
    the mode bits) /sys; skips the test where neither is."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            (candidate / "probe").open("wb").close()
        except OSError:
            return candidate
        (candidate / "probe").unlink()
    pytest.skip("no folder here refuses to be written to")


def test_a_read_only_folder_is_a_widenet_error_before_the_first_step(tmp_path) -> None:
    """torch.save raised its own RuntimeError ("open file failed"), after the model moved."""
    folder = unwritable_folder(tmp_path)
    x, y = regression()
    model = net()
    before = copy.deepcopy(model.state_dict())
    try:
        with pytest.raises(wn.WidenetError, match=r"could not write checkpoint .*c\.pt: .*"
                           "Permission denied.*choose a path in a folder you can write to"):
            train(model, x, y, lr=0.1, steps=8, checkpoint=Checkpoint(folder / "c.pt", 4))
    finally:
        (tmp_path / "read-only").chmod(0o755)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_a_path_that_cannot_be_written_is_refused_before_the_first_step(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (torch.save raises a RuntimeError, as on a full disk): the first
    write fails, before the model has moved, and so does a resumed run's."""
    def read_only(content: object, file: io.BufferedWriter) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", read_only)
    x, y = regression()
    model = net()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(wn.WidenetError, match=r"could not write checkpoint .*file write failed"):
        train(model, x, y, lr=0.1, steps=8, checkpoint=Checkpoint(tmp_path / "c.pt", every=4))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    eight_steps(tmp_path / "c.pt")  # a resumed run: it fails at the checkpoint's own step
    saved = torch.load(tmp_path / "c.pt", weights_only=True)["model"]
    monkeypatch.setattr(torch, "save", read_only)
    with pytest.raises(wn.WidenetError, match=r"could not write checkpoint .*file write failed"):
        train(model, x, y, lr=0.1, steps=16, checkpoint=Checkpoint(tmp_path / "c.pt", every=4,
                                                                   resume=True))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_a_run_killed_before_its_first_cadence_resumes_from_step_0(tmp_path) -> None:
    """The checkpoint written before the first step is a valid start: resuming from it ends
    where an uninterrupted run does, bit for bit."""
    x, y = regression()
    arguments = {"lr": 0.1, "steps": 6, "optimizer": Optimizer("sgd", momentum=0.9,
                                                                batch_size=5)}
    path = tmp_path / "c.pt"
    train(net(), x, y, **{**arguments, "steps": 3}, checkpoint=Checkpoint(path, every=100))
    assert torch.load(path, weights_only=True)["step"] == 0
    resumed, plain = net(seed=7), net()
    result = train(resumed, x, y, **arguments, checkpoint=Checkpoint(path, every=100,
                                                                     resume=True))
    expected = train(plain, x, y, **arguments)
    assert result.history.equals(expected.history)
    assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(), plain.parameters(),
                                                strict=True))


def test_a_loader_run_killed_before_its_first_cadence_resumes_in_its_order(tmp_path) -> None:
    """The checkpoint before the first step keeps the loader generator's state, as later ones
    do: it kept none, and the resuming process's generator (seeded otherwise) set the order."""
    x, y = regression()

    def loader(seed: int) -> DataLoader:
        return DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True,
                          generator=torch.Generator().manual_seed(seed))

    path = tmp_path / "c.pt"
    train(net(), loader(0), lr=0.1, steps=3, log_every=1,
          checkpoint=Checkpoint(path, every=100))
    # killed again before the first cadence: the resumed run's rewrite keeps the state too
    train(net(seed=6), loader(1), lr=0.1, steps=3, log_every=1,
          checkpoint=Checkpoint(path, every=100, resume=True))
    assert torch.load(path, weights_only=True)["step"] == 0
    result = train(net(seed=7), loader(2), lr=0.1, steps=8, log_every=1,
                   checkpoint=Checkpoint(path, every=100, resume=True))
    expected = train(net(), loader(0), lr=0.1, steps=8, log_every=1)
    assert result.history.equals(expected.history)


def dropout_net(seed: int = 0) -> torch.nn.Module:
    """A net that draws from torch's global generator at every forward pass."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(16, 1)).double()


@pytest.mark.parametrize("loader", [False, True])
def test_a_resumed_run_draws_the_global_random_numbers_of_an_uninterrupted_one(
        tmp_path, loader: bool) -> None:
    """Dropout draws from torch's global generator; the resumed run (a new process: another
    global state) restores it from the checkpoint and continues bit for bit. A DataLoader
    without a generator of its own also draws from it when a pass begins, and the resumed
    run's replay of the interrupted pass must not count twice."""
    x, y = regression()
    path = tmp_path / "c.pt"

    def data() -> tuple:
        return (DataLoader(TensorDataset(x, y), batch_size=5),) if loader else (x, y)

    uninterrupted = dropout_net()
    torch.manual_seed(1)
    expected = train(uninterrupted, *data(), lr=0.1, steps=8, log_every=1)
    interrupted = dropout_net()
    torch.manual_seed(1)
    train(interrupted, *data(), lr=0.1, steps=3, log_every=1, checkpoint=Checkpoint(path, 3))
    resumed = dropout_net(seed=2)
    torch.manual_seed(2)
    result = train(resumed, *data(), lr=0.1, steps=8, log_every=1,
                   checkpoint=Checkpoint(path, 3, resume=True))
    assert result.history.equals(expected.history)
    assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(),
                                                uninterrupted.parameters(), strict=True))


def test_a_version_2_checkpoint_without_random_state_still_resumes(tmp_path) -> None:
    path = tmp_path / "c.pt"
    eight_steps(path)
    content = torch.load(path, weights_only=True)
    del content["rng"]
    torch.save({**content, "version": 2}, path)
    x, y = regression()
    resumed, plain = net(seed=3), net()
    train(resumed, x, y, lr=0.1, steps=12, checkpoint=Checkpoint(path, 4, resume=True))
    train(plain, x, y, lr=0.1, steps=12)
    assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(), plain.parameters(),
                                                strict=True))
    torch.save({**content, "version": 3}, path)  # version 3 has the random state
    with pytest.raises(wn.WidenetError, match=r"not a widenet training checkpoint \(version 2 "
                       r"or 3\)"):
        train(net(), x, y, lr=0.1, steps=12, checkpoint=Checkpoint(path, 4, resume=True))


class Opaque(Monitor):
    """A monitor whose state is an arbitrary object: it cannot go into a checkpoint."""

    def measure(self, state: RunState) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"thing": object()}


def test_monitor_state_that_is_not_plain_data_is_refused_when_written(tmp_path) -> None:
    x, y = regression()
    with pytest.raises(wn.WidenetError, match=r"checkpoint\['monitors'\]\[0\]\['thing'\] would "
                                              "hold a object"):
        train(net(), x, y, lr=0.1, steps=4, monitors=[Opaque()],
              checkpoint=Checkpoint(tmp_path / "c.pt", every=2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore:SharpnessMonitor")  # no GD threshold under Adam
def test_adam_and_sharpness_state_survive_a_weights_only_checkpoint(tmp_path) -> None:
    """Adam's betas (a tuple) and the sharpness monitor's warm start (a Sharpness result, stored
    as a dict) round-trip: the resumed run is identical."""
    x, y = regression()
    arguments = {"lr": 0.01, "steps": 6, "log_every": 2, "optimizer": "adam"}
    expected = train(net(), x, y, monitors=[SharpnessMonitor(k=2, every=2)], **arguments)
    train(net(), x, y, monitors=[SharpnessMonitor(k=2, every=2)],
          checkpoint=Checkpoint(tmp_path / "c.pt", every=3), **{**arguments, "steps": 3})
    resumed = train(net(), x, y, monitors=[SharpnessMonitor(k=2, every=2)],
                    checkpoint=Checkpoint(tmp_path / "c.pt", every=3, resume=True), **arguments)
    assert resumed.history.equals(expected.history)
    assert list(expected.measurements["sharpness"]["step"]) == [0, 2, 4, 6]
    assert resumed.measurements["sharpness"].equals(expected.measurements["sharpness"])


@pytest.mark.parametrize(("arguments", "message"), [
    ({"path": ""}, "non-empty"), ({"path": 3}, "non-empty str or Path"),
    ({"path": "c.pt", "every": 0}, "checkpoint every must be a positive integer"),
    ({"path": "c.pt", "resume": "yes"}, "resume must be True or False"),
])
def test_bad_checkpoint_specs(arguments: dict, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        Checkpoint(**arguments)


def test_exploit_fixture_really_runs_code_when_unpickled(tmp_path) -> None:
    """The hostile payload above is real: plain pickle executes it."""
    target = tmp_path / "ran"
    pickle.loads(pickle.dumps(Exploit(str(target)))).close()
    assert target.exists()


def test_a_run_resumed_into_a_model_initialized_otherwise_is_the_checkpointed_run() -> None:
    """Why the fingerprint leaves out the parameters' values: everything taken from the
    initial ones travels in the checkpoint (a LazyModel's w_0 and a LinearizedModel's
    theta_0 as buffers, the monitors' theta_0, K_0 and f_lin), so a resumed run continues the
    checkpointed one bit for bit whatever the model it is given held (here another seed's)."""
    from widenet.diagnostics.builtin import KernelMonitor, LinearizationMonitor
    from widenet.dynamics.lazy import LazyModel
    from widenet.dynamics.linearize import linearize

    x, y = regression()
    for build in (lambda seed: LazyModel(net(seed), 4.0), lambda seed: linearize(net(seed))):
        def monitors() -> list[Monitor]:
            return [WeightMovementMonitor(), KernelMonitor(), LinearizationMonitor()]
        arguments = {"lr": 0.5, "log_every": 3, "loss_scale": 1 / 16}
        whole_net = build(0)
        whole = train(whole_net, x, y, steps=12, monitors=monitors(), **arguments)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "c.pt"
            train(build(0), x, y, steps=6, monitors=monitors(),
                  checkpoint=Checkpoint(path, every=6), **arguments)
            resumed_net = build(99)
            resumed = train(resumed_net, x, y, steps=12, monitors=monitors(),
                            checkpoint=Checkpoint(path, every=6, resume=True), **arguments)
        assert resumed.history.equals(whole.history)
        for name, table in whole.measurements.items():
            assert resumed.measurements[name].equals(table)
        for key, value in whole_net.state_dict().items():  # parameters and w_0 / theta_0
            assert torch.equal(resumed_net.state_dict()[key], value)
