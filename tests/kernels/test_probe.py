"""The instrumented passes of the empirical-NTK probe."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import torch
from torch.utils._pytree import tree_leaves

from widenet.kernels._probe import _leaves


def test_the_fast_leaf_walk_gives_what_pytree_gives():
    pair = namedtuple("pair", "a b")
    t = [torch.zeros(1) for _ in range(6)]
    tree = ((t[0], [t[1], {"x": t[2], "y": (3, None)}]),
            {"k": pair(t[3], OrderedDict(z=t[4]))}, t[5], "s")
    assert [id(leaf) for leaf in _leaves(tree)] == [id(leaf) for leaf in tree_leaves(tree)]
