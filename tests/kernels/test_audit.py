"""The probe of the empirical-NTK audit: distinct points, and what it records."""

from __future__ import annotations

import torch
from torch import nn

from tests.kernels.empirical_models import MODELS, ReversedBatch, points
from widenet.kernels._audit import PROBE_POINTS, UNBATCHED_OPS, prepare, probe_points


def test_the_probe_takes_the_first_distinct_points_of_x1_then_x2():
    x1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    x2 = torch.tensor([[1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [3.0, 1.0], [4.0, 0.0]])
    assert torch.equal(probe_points(x1, x2), torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0]]))
    assert torch.equal(probe_points(x2[1:]), x2[[1, 3, 4]])


def test_the_windowed_search_finds_what_a_scan_of_every_row_finds():
    def scanned(*xs):
        chosen = [xs[0][0]]
        for x in xs:
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


def test_the_fast_leaf_walk_gives_what_pytree_gives():
    from collections import OrderedDict, namedtuple

    from torch.utils._pytree import tree_leaves

    from widenet.kernels._audit import _leaves

    pair = namedtuple("pair", "a b")
    t = [torch.zeros(1) for _ in range(6)]
    tree = ((t[0], [t[1], {"x": t[2], "y": (3, None)}]),
            {"k": pair(t[3], OrderedDict(z=t[4]))}, t[5], "s")
    assert [id(leaf) for leaf in _leaves(tree)] == [id(leaf) for leaf in tree_leaves(tree)]


def test_rows_close_is_close_row_by_row():
    from widenet.kernels._audit import _close
    from widenet.kernels._functional import rows_close

    a = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[1, 0, 0] += 1e-2  # far off
    b[2, 2, 1] += 1e-9  # within sqrt(eps) (float32)
    b[3, 0, 1] = float("nan")
    rows = rows_close(a, b)
    assert rows.tolist() == [_close(a[i], b[i]) for i in range(4)] == [True, False, True, False]
