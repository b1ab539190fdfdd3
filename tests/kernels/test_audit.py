"""The probe of the empirical-NTK audit: distinct points, and what it records."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from tests.kernels.empirical_models import MODELS, ReversedBatch, points
from widenet.kernels._audit import PROBE_POINTS, UNBATCHED_OPS, prepare, probe_points


def test_the_probe_takes_the_last_points_then_the_first_distinct_points_of_x1_then_x2():
    x1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    x2 = torch.tensor([[1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [3.0, 1.0], [4.0, 0.0]])
    assert torch.equal(probe_points(x1, x2), torch.tensor([[1.0, 0.0], [4.0, 0.0], [2.0, 0.0]]))
    assert torch.equal(probe_points(x2[1:]), x2[[4, 1, 3]])
    assert torch.equal(probe_points(x2), x2[[4, 0, 1]])


def test_the_windowed_search_finds_what_a_scan_of_every_row_finds():
    def scanned(*xs):
        sources = [x[-1:] for x in xs] + list(xs)
        chosen = [sources[0][0]]
        for x in sources:
            for row in x:
                if len(chosen) < PROBE_POINTS and all(not torch.equal(row, c) for c in chosen):
                    chosen.append(row)
        return torch.stack(chosen if len(chosen) > 1 else chosen * 2)

    generator = torch.Generator().manual_seed(0)
    for n1, n2, values in [(1, 1, 1), (7, 3, 2), (40, 5, 2), (100, 100, 3), (9, 1, 1),
                           (5, 2, 1000)]:
        x1 = torch.randint(values, (n1, 2), generator=generator).float()
        x2 = torch.randint(values, (n2, 2), generator=generator).float()
        for run in (0, n1 // 2):  # distinct leading points or a long run of equal ones
            x1[:run] = x1[0]
            assert torch.equal(probe_points(x1, x2), scanned(x1, x2))
            assert torch.equal(probe_points(x1), scanned(x1))


def test_equal_points_give_a_probe_of_two_copies_and_two_distinct_points_a_probe_of_two():
    x = torch.ones(4, 3)
    assert torch.equal(probe_points(x), torch.ones(2, 3))
    assert probe_points(torch.tensor([[0.0], [5.0], [0.0], [5.0]])).shape == (2, 1)
    assert probe_points(points(10)).shape == (PROBE_POINTS, 4)


def test_the_audit_names_the_operations_vmap_cannot_batch():
    for name, ops in (("prelu", ("prelu",)), ("lstm", ("lstm",)), ("gru", ("gru",)),
                      ("cdist", ("cdist",)), ("mlp", ())):
        factory, shape, _ = MODELS[name]
        _, audit = prepare(factory(), points(3, shape))
        assert audit.unbatched == ops, name
    assert {"prelu", "cdist", "lstm", "gru"} <= UNBATCHED_OPS


def test_rows_that_do_not_follow_the_points_are_seen_even_when_shapes_match():
    _, audit = prepare(ReversedBatch(), points(5))
    assert "does not follow the points" in audit.layerwise_problem
    _, fine = prepare(nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double(),
                      points(5))
    assert fine.layerwise_problem is None


def test_rows_close_is_close_row_by_row():
    from widenet.kernels._audit import _close
    from widenet.kernels._functional import rows_close

    a = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[1, 0, 0] += 1e-2  # far off
    b[2, 2, 1] += 1e-9  # within sqrt(eps) (float32)
    b[3, 0, 1] = float("nan")
    rows = rows_close([(a, b)])[0]
    assert rows.tolist() == [_close(a[i], b[i]) for i in range(4)] == [True, False, True, False]


class _CountingMLP(nn.Module):
    """An MLP that counts its forward passes by batch size."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.passes: Counter = Counter()

    def forward(self, x):
        self.passes[x.shape[0]] += 1
        return self.net(x)


def test_the_guard_on_the_last_point_reuses_the_probes_pass_on_it():
    from widenet.kernels.empirical import empirical_ntk

    model = _CountingMLP()
    x = points(20)
    empirical_ntk(model, x, method="layerwise")
    # the probe: one pass on its 3 points and one on each alone; one pass on all 20 points
    assert model.passes == Counter({3: 1, 1: 3, 20: 1})
    model.passes.clear()
    empirical_ntk(model, x, method="layerwise", chunk_size=8)
    # panels 0..7, 8..15, 16..19, each with the row chunks before it (features of 8 points
    # five times, of 4 once): the one ending with x[-1] is checked by the probe's pass, the
    # five ending with x[7] or x[15] by a pass of their own
    assert model.passes == Counter({3: 1, 1: 3 + 5, 8: 5, 4: 1})


def test_a_probe_pass_is_reused_only_for_the_same_bits():
    x = points(6)
    x[0] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    _, audit = prepare(_CountingMLP(), x)
    assert audit.single(x[-1]) is audit.singles[0]
    assert audit.single(x[0].clone()) is audit.singles[1]
    assert audit.single(torch.tensor([-0.0, 1.0, 2.0, 3.0])) is None
    assert audit.single(x[0][:3]) is None
    assert audit.single(x[2]) is None
