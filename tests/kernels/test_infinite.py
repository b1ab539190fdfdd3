"""Infinite-width NNGP and NTK: Monte Carlo over initializations, identities, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import widenet as wn
from tests.conftest import FULL, brute_force_ntk, brute_force_ntk_blocks, sphere_points

Z = 5.0  # tolerance in standard errors


def empirical_samples(make_net, x: torch.Tensor, seeds: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-seed empirical NTKs (seeds, n, n) and output products f(x) f(x)^T (seeds, n, n)."""
    ntks, products = [], []
    for seed in range(seeds):
        net = make_net(seed)
        ntks.append(brute_force_ntk(net, x))
        f = net(x).detach()[:, 0]
        products.append(torch.outer(f, f))
    return torch.stack(ntks), torch.stack(products)


def assert_mean_within_standard_errors(samples: torch.Tensor, exact: torch.Tensor) -> None:
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    excess = (mean - exact).abs() - Z * se - 1e-12
    assert float(excess.max()) <= 0, f"off by {float((mean - exact).abs().max())}"


@pytest.mark.parametrize(("activation", "bias_std"),
                         [("relu", 0.0), ("abs", 0.5), ("erf", 0.3), ("tanh", 0.2),
                          (wn.activations.ab(0.8, -0.3), 0.1)])
def test_one_hidden_layer_means_are_exact_at_any_width(activation, bias_std: float) -> None:
    """With one hidden layer, E[empirical NTK] = Theta and E[f(x) f(x')] = Sigma^2 at every width
    (the readout weights are independent of the hidden features), so the Monte Carlo mean over
    initializations must match the limit within its standard error."""
    x = sphere_points(4, 3, seed=1)
    make = lambda seed: wn.MLP(3, [16], 1, activation, bias_std=bias_std, seed=seed,  # noqa: E731
                               dtype=torch.float64)
    kernels = wn.infinite_kernels(make(0), x)
    ntks, products = empirical_samples(make, x, seeds=300)
    assert_mean_within_standard_errors(ntks, kernels.ntk)
    assert_mean_within_standard_errors(products, kernels.nngp)


def relative_errors(width: int, x: torch.Tensor, seeds: int) -> torch.Tensor:
    errors = []
    for seed in range(seeds):
        net = wn.MLP(x.shape[1], [width] * 3, 1, "relu", bias_std=0.2, seed=seed,
                     dtype=torch.float64)
        limit = wn.infinite_kernels(net, x).ntk
        errors.append(torch.linalg.matrix_norm(brute_force_ntk(net, x) - limit)
                      / torch.linalg.matrix_norm(limit))
    return torch.stack(errors)


def test_deep_empirical_ntk_approaches_the_limit_like_one_over_sqrt_width() -> None:
    """Relative Frobenius error ~ C m^{-1/2}: the fitted slope between two widths 16x apart lies
    within 5 standard errors of its estimate around -1/2 (and never above -1/4)."""
    x = sphere_points(5, 4, seed=2)
    seeds = 24 if FULL else 10
    small, large = relative_errors(32, x, seeds), relative_errors(512, x, seeds)
    slope = math.log(float(large.mean()) / float(small.mean())) / math.log(16)
    # Delta method: se(log mean) = se(mean) / mean.
    se = math.hypot(*(float(e.std() / e.mean()) / math.sqrt(seeds) for e in (small, large)))
    se /= math.log(16)
    assert slope < -0.25
    assert abs(slope + 0.5) <= Z * se + 0.1, (slope, se)


def test_per_layer_blocks_match_brute_force_in_expectation() -> None:
    """Each parameter's empirical block converges to the limit's block (one hidden layer: exact
    in expectation), and the limit's blocks sum to its NTK."""
    x = sphere_points(3, 3, seed=4)
    make = lambda seed: wn.MLP(3, [16], 1, "abs", bias_std=0.4, seed=seed,  # noqa: E731
                               dtype=torch.float64)
    limit = wn.infinite_kernels(make(0), x, per_layer=True)
    blocks = limit.blocks
    assert list(blocks) == [name for name, _ in make(0).named_parameters()]
    assert torch.allclose(sum(blocks.values()), limit.ntk, rtol=1e-14)
    samples = [brute_force_ntk_blocks(make(seed), x) for seed in range(300)]
    for name, block in blocks.items():
        assert_mean_within_standard_errors(torch.stack([s[name] for s in samples]), block)


def test_per_layer_intermediates() -> None:
    x = sphere_points(6, 4)
    net = wn.MLP(4, [8] * 3, 2, "erf", bias_std=0.3)
    full = wn.infinite_kernels(net, x, per_layer=True, block_size=4)
    assert len(full.layers.sigma) == 4
    assert len(full.layers.sigma_dot) == 3
    assert torch.equal(full.layers.sigma[-1], full.nngp)
    theta = full.layers.sigma[0]
    for sigma, sigma_dot in zip(full.layers.sigma[1:], full.layers.sigma_dot, strict=True):
        theta = sigma + sigma_dot * theta
    assert torch.allclose(theta, full.ntk, rtol=1e-13)
    assert torch.allclose(sum(full.blocks.values()), full.ntk, rtol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "abs", "identity", wn.activations.ab(0.6, 0.8),
                                        wn.activations.leaky_relu(0.3)])
@pytest.mark.parametrize("depth", [0, 1, 4, 30])
def test_diagonal_at_the_edge_of_chaos(activation, depth: int) -> None:
    """With ||x||^2 = d at the EOC every Sigma^l(x, x) = sigma_w^2, so Theta(x, x) =
    sigma_w^2 (L+1):
    exactly L + 1 when a^2 + b^2 = 1 (sigma_w = 1)."""
    net = wn.MLP(7, [5] * depth, 1, activation)
    kernels = wn.infinite_kernels(net, sphere_points(9, 7))
    weight_var = net.weight_std**2
    assert torch.allclose(kernels.ntk.diagonal(), torch.full((9,), weight_var * (depth + 1),
                                                             dtype=torch.float64), rtol=1e-13)
    assert torch.allclose(kernels.nngp.diagonal(), torch.full((9,), weight_var,
                                                              dtype=torch.float64), rtol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_condition_number_tends_to_one_plus_n_over_three(activation: str) -> None:
    """Theta / (L + 1) -> (3/4) I + (1/4) 1 1^T (times sigma_w^2), whose condition number is
    1 + n/3; docs/theory.md section 4:
    approached from above, e.g. about 35 for n = 100 at L = 999."""
    n = 100
    x = sphere_points(n, 10)
    conditions = [wn.condition_number(wn.infinite_kernels(wn.MLP(10, [1] * depth, 1, activation),
                                                          x).ntk) for depth in (9, 99, 999)]
    limit = 1 + n / 3
    assert conditions[0] > conditions[1] > conditions[2] > limit
    assert conditions[2] < 1.05 * limit


def test_symmetric_psd_and_blocking_invariant() -> None:
    x = sphere_points(23, 6, seed=3)
    net = wn.MLP(6, [4] * 3, 1, "tanh", bias_std=0.1)
    reference = wn.infinite_kernels(net, x)
    assert torch.equal(reference.ntk, reference.ntk.T)
    assert float(torch.linalg.eigvalsh(reference.ntk)[0]) > -1e-12 * float(reference.ntk.max())
    for block in (1, 5, 7, 23, 100):
        blocked = wn.infinite_kernels(net, x, block_size=block)
        assert torch.allclose(blocked.ntk, reference.ntk, rtol=1e-13)
        assert torch.equal(blocked.ntk, blocked.ntk.T)
    cross = wn.infinite_kernels(net, x, x.clone(), block_size=5)
    assert torch.allclose(cross.ntk, reference.ntk, rtol=1e-12)
    assert torch.allclose(cross.nngp, reference.nngp, rtol=1e-12)


def test_rectangular_kernels_are_submatrices() -> None:
    x = sphere_points(12, 5)
    net = wn.MLP(5, [3, 3], 1, "gelu", bias_std=0.5)
    full = wn.infinite_kernels(net, x)
    part = wn.infinite_kernels(net, x[:4], x[4:], block_size=3)
    assert part.ntk.shape == (4, 8)
    assert torch.allclose(part.ntk, full.ntk[:4, 4:], rtol=1e-13)


def test_depth_zero_is_the_scaled_linear_kernel() -> None:
    x = sphere_points(5, 3)
    net = wn.MLP(3, [], 1, "relu", weight_std=1.5, bias_std=0.5)
    expected = 1.5**2 * (x @ x.T) / 3 + 0.25
    kernels = wn.infinite_kernels(net, x)
    assert torch.allclose(kernels.nngp, expected)
    assert torch.allclose(kernels.ntk, expected)


def test_standard_parametrization_has_the_nngp_but_no_ntk() -> None:
    x = sphere_points(4, 3)
    standard = wn.MLP(3, [8], 1, "relu", bias_std=0.1, parametrization="standard")
    ntk = wn.MLP(3, [8], 1, "relu", bias_std=0.1)
    kernels = wn.infinite_kernels(standard, x, per_layer=True)
    assert torch.equal(kernels.nngp, wn.infinite_kernels(ntk, x).nngp)
    assert kernels.blocks == {}
    with pytest.raises(wn.WidenetError, match="no finite infinite-width NTK"):
        _ = kernels.ntk


def test_dtype_follows_the_inputs_unless_overridden() -> None:
    x = sphere_points(6, 4, dtype=torch.float32)
    net = wn.MLP(4, [8] * 2, 1, "abs")
    single = wn.infinite_kernels(net, x)
    double = wn.infinite_kernels(net, x, dtype=torch.float64)
    assert single.ntk.dtype == torch.float32
    assert double.ntk.dtype == torch.float64
    assert torch.allclose(single.ntk.double(), double.ntk, rtol=1e-5)
    for bad in ("float64", torch.int32):  # a string used to raise AttributeError
        with pytest.raises(wn.WidenetError, match="dtype must be a floating-point torch dtype"):
            wn.infinite_kernels(net, x, dtype=bad)


def test_positive_homogeneity_of_bias_free_family_kernels() -> None:
    """phi = a s + b|s| without biases: K(c x, x') = c K(x, x') for c > 0."""
    x = sphere_points(5, 4)
    net = wn.MLP(4, [3] * 3, 1, wn.activations.ab(0.4, 0.9))
    base = wn.infinite_kernels(net, x)
    for c in (1e-25, 3.7, 1e25):
        scaled = wn.infinite_kernels(net, c * x[:2], x)
        assert torch.allclose(scaled.ntk, c * base.ntk[:2], rtol=1e-12)


finite_floats = st.floats(-1e3, 1e3, allow_nan=False)


@pytest.mark.filterwarnings("ignore:the Hermite series:UserWarning")  # tanh at norms 1e30
@settings(max_examples=40 if FULL else 15, deadline=None)
@given(log_norms=st.lists(st.floats(-30, 30), min_size=2, max_size=5),
       bias_std=st.sampled_from([0.0, 0.5]),
       activation=st.sampled_from(["relu", "abs", "erf", "tanh"]),
       direction=st.lists(finite_floats, min_size=3, max_size=3))
def test_edge_cases_are_finite(log_norms, bias_std, activation, direction) -> None:
    """Norms from 1e-30 to 1e30, zero points, duplicates and antipodes: finite and symmetric, and
    a duplicate point gets the same row (closed-form duals)."""
    u = torch.tensor(direction, dtype=torch.float64)
    u = u / u.norm() if float(u.norm()) > 0 else torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    rows = [10.0**e * u for e in log_norms]
    rows += [-rows[0], rows[0].clone(), torch.zeros(3, dtype=torch.float64)]
    x = torch.stack(rows)
    net = wn.MLP(3, [4] * 3, 1, activation, bias_std=bias_std)
    kernels = wn.infinite_kernels(net, x)
    for matrix in (kernels.nngp, kernels.ntk):
        assert bool(torch.isfinite(matrix).all())
        assert torch.equal(matrix, matrix.T)
        if activation != "tanh":  # quadrature is not symmetric in (x, x') to round-off
            duplicate = matrix[len(log_norms) + 1]
            assert torch.allclose(duplicate, matrix[0], rtol=1e-12, atol=0.0)



@pytest.mark.parametrize("activation", ["relu", "abs"])
def test_a_duplicate_of_a_point_beside_a_parallel_one_gets_its_row(activation: str) -> None:
    """Points 0 and 3 are equal and point 1 is parallel to them (rho = 1 up to an ulp): the
    pairs (0, 1) and (1, 3) are computed with the roles swapped, and arcsin near rho = 1 turns
    an ulp of asymmetry in the dual into 1e-9 in the NTK (found by the fuzz test above)."""
    u = torch.tensor([145.15657433090928, -377.49708537505296, 6.064976412995179],
                     dtype=torch.float64)
    u = u / u.norm()
    x = torch.stack([10**5e-8 * u, 10**1e-7 * u, -(10**5e-8) * u, 10**5e-8 * u])
    kernels = wn.infinite_kernels(wn.MLP(3, [4] * 3, 1, activation, bias_std=0.5), x)
    for matrix in (kernels.nngp, kernels.ntk):
        assert torch.equal(matrix[3], matrix[0])

@pytest.mark.parametrize("stds", [{"weight_std": 1e200}, {"weight_std": 1.0, "bias_std": 1e200}],
                         ids=["weight", "bias"])
def test_a_std_whose_square_overflows_is_a_clear_error(stds) -> None:
    """sigma^2 beyond float64's range is an overflowing kernel, reported as one; std ** 2
    raised Python's raw OverflowError while the layers were compiled."""
    x = torch.randn(3, 2, dtype=torch.float64)
    net = wn.MLP(2, [3], 1, device="meta", **stds)
    with pytest.raises(wn.WidenetError, match=r"overflowed in torch\.float64"):
        wn.infinite_kernels(net, x)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with pytest.raises(wn.WidenetError, match=r"overflowed in torch\.float64"):
        wn.infinite_kernels(model, x, **stds)


def test_float32_overflow_is_a_clear_error() -> None:
    x = torch.full((2, 3), 1e30)
    with pytest.raises(wn.WidenetError, match=r"overflowed in torch\.float32"):
        wn.infinite_kernels(wn.MLP(3, [4], 1), x)
    assert bool(torch.isfinite(wn.infinite_kernels(wn.MLP(3, [4], 1), x,
                                                   dtype=torch.float64).ntk).all())
    deep = wn.MLP(3, [4] * 400, 1, weight_std=10.0, bias_std=1.0)  # variance x 50 per layer
    with pytest.raises(wn.WidenetError, match="weight_std and bias_std build up over the layers"):
        wn.infinite_kernels(deep, x, dtype=torch.float64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda() -> None:
    x = sphere_points(50, 4)
    net = wn.MLP(4, [8] * 3, 1, "relu", bias_std=0.1)
    gpu = wn.infinite_kernels(net, x.cuda())
    assert gpu.ntk.device.type == "cuda"
    assert torch.allclose(gpu.ntk.cpu(), wn.infinite_kernels(net, x).ntk, rtol=1e-12)


@pytest.mark.parametrize(("x1", "x2", "message"), [
    (torch.randn(4, 5), None, "has 5 features but the model expects 3"),
    (torch.randn(4, 3), torch.randn(2, 4), "x2 has 4 features"),
    (torch.tensor([[1.0, float("nan"), 0.0]]), None, "NaN or inf"),
    (torch.tensor([[1.0, float("inf"), 0.0]]), None, "NaN or inf"),
    (torch.zeros(0, 3), None, "empty"),
    (torch.randn(3), None, r"shape \(n, d\)"),
    (torch.ones(2, 3, dtype=torch.long), None, "floating-point"),
    ([[1.0, 2.0, 3.0]], None, "torch.Tensor"),
])
def test_bad_inputs(x1, x2, message: str) -> None:
    with pytest.raises(wn.WidenetError, match=message):
        wn.infinite_kernels(wn.MLP(3, [4], 1), x1, x2)


@pytest.mark.parametrize("block_size", [0, -2])
def test_bad_net_and_block_size(block_size: int) -> None:
    x = torch.randn(3, 3)
    with pytest.raises(wn.WidenetError, match=r"needs a torch\.nn\.Module"):
        wn.infinite_kernels(lambda t: t, x)
    with pytest.raises(wn.WidenetError, match="block_size must be a positive integer"):
        wn.infinite_kernels(wn.MLP(3, [4], 1), x, block_size=block_size)


def test_requires_grad_inputs_work() -> None:
    """Inputs that require grad (issue 12 item 12) give the same kernels, without a graph."""
    x = sphere_points(4, 3)
    net = wn.MLP(3, [4], 1, "tanh", bias_std=0.2)
    kernels = wn.infinite_kernels(net, x.clone().requires_grad_(), x.clone().requires_grad_())
    assert not kernels.ntk.requires_grad
    assert torch.allclose(kernels.ntk, wn.infinite_kernels(net, x).ntk, rtol=1e-12)


def test_the_diagonal_is_exact_in_high_dimension() -> None:
    """At the EOC with a^2 + b^2 = 1 and ||x||^2 = d, Theta(x, x) = L + 1 exactly; at d = 1000
    a matmul and a mean round differently, which must not leak through arcsin near rho = 1."""
    x = sphere_points(20, 1000)
    depth = 30
    net = wn.MLP(1000, [1] * depth, 1, wn.activations.ab(0.5**0.5, 0.5**0.5),
                 dtype=torch.float64)
    diagonal = wn.infinite_kernels(net, x).ntk.diagonal()
    assert torch.allclose(diagonal, torch.full_like(diagonal, depth + 1), rtol=1e-13, atol=0)


def arc_cosine_recursion(x1: torch.Tensor, x2: torch.Tensor, depth: int, weight_var: float,
                         bias_var: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ReLU NNGP and each layer's (weight + bias) share of the NTK, from Cho & Saul's
    closed form written out here: with t = arccos(Sigma12 / sqrt(Sigma11 Sigma22)),
    E[relu(u) relu(v)] = sqrt(Sigma11 Sigma22) (sin t + (pi - t) cos t) / (2 pi) and
    E[relu'(u) relu'(v)] = (pi - t) / (2 pi); a share below layer l is multiplied by
    sigma_w^2 E[relu' relu'] at every layer above it. Float64, for tests only."""
    d = x1.shape[1]
    s12 = weight_var * (x1 @ x2.T) / d + bias_var
    s11 = weight_var * (x1 * x1).sum(1) / d + bias_var
    s22 = weight_var * (x2 * x2).sum(1) / d + bias_var
    shares = [s12.clone()]
    for _ in range(depth):
        norms = torch.sqrt(torch.outer(s11, s22))
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        rho = torch.where(norms > 0, s12 / safe, torch.zeros_like(s12)).clamp(-1, 1)
        # duplicates and antipodes have rho = +-1 up to round-off, where arccos is vertical
        t = torch.arccos(torch.where(1 - rho.abs() < 1e-12, rho.sign(), rho))
        product = norms * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
        derivative_product = (math.pi - t) / (2 * math.pi)
        shares = [weight_var * derivative_product * share for share in shares]
        s12 = weight_var * product + bias_var
        shares.append(s12.clone())
        s11, s22 = weight_var * s11 / 2 + bias_var, weight_var * s22 / 2 + bias_var
    return s12, shares


@pytest.mark.parametrize(("weight_std", "bias_std"), [(2**0.5, 0.0), (1.3, 0.4)])
@pytest.mark.parametrize("depth", [1, 3, 8])
def test_relu_mlps_follow_the_arc_cosine_recursion(weight_std: float, bias_std: float,
                                                   depth: int) -> None:
    """widenet.MLP and a torch Sequential of Linear/ReLU, on points with a zero one and an
    antipodal pair, against the closed form; the NTK is the sum of the layers' shares."""
    x = sphere_points(7, 5, seed=5)
    x[1], x[2] = 0.0, -x[0]
    x2 = torch.cat([sphere_points(3, 5, seed=6), x[:2]])
    torch_net = torch.nn.Sequential(torch.nn.Linear(5, 4), *(
        module for _ in range(depth) for module in (torch.nn.ReLU(), torch.nn.Linear(4, 4))))
    torch_net[-1] = torch.nn.Linear(4, 1)
    nets = [(wn.MLP(5, [4] * depth, 1, "relu", weight_std, bias_std), {}),
            (torch_net, {"weight_std": weight_std, "bias_std": bias_std})]
    for net, stds in nets:
        for second in (None, x2):
            nngp, shares = arc_cosine_recursion(x, x if second is None else second, depth,
                                                weight_std**2, bias_std**2)
            kernels = wn.infinite_kernels(net, x, second, per_layer=True, **stds)
            scale = float(nngp.abs().max())
            assert torch.allclose(kernels.nngp, nngp, rtol=1e-12, atol=1e-12 * scale)
            assert torch.allclose(kernels.ntk, sum(shares), rtol=1e-12, atol=1e-12 * scale)
            per_layer: dict[str, torch.Tensor] = {}  # weight + bias of each layer, in order
            for name, block in kernels.blocks.items():
                layer = name.rpartition(".")[0]
                per_layer[layer] = per_layer.get(layer, 0) + block
            for mine, share in zip(per_layer.values(), shares, strict=True):
                assert torch.allclose(mine, share, rtol=1e-12, atol=1e-12 * scale)
