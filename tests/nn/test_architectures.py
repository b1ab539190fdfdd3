import pytest
import torch

from widenet.errors import WidenetError
from widenet.kernels.infinite import infinite_kernels
from widenet.nn import Conv2d, Dense, GlobalAvgPool, cnn, myrtle5


def test_myrtle5_maps_32x32_images_to_its_outputs_and_has_a_limit() -> None:
    net = myrtle5(3, 4, outputs=2, seed=0, dtype=torch.float64)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert net(x).shape == (2, 2)
    assert sum(isinstance(layer, Conv2d) for layer in net) == 4
    limit = infinite_kernels(myrtle5(3, 10**6, device="meta"), x)
    assert torch.isfinite(limit.ntk).all()
    assert torch.equal(limit.ntk, limit.ntk.T)


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_cnn_readouts(readout: str) -> None:
    net = cnn(2, (5, 6), 3, 2, readout=readout, outputs=4, seed=1)
    assert net(torch.randn(7, 2, 5, 6)).shape == (7, 4)
    dense = net[-1]
    assert isinstance(dense, Dense)
    assert dense.in_features == (3 * 5 * 6 if readout == "flatten" else 3)
    assert isinstance(net[-2], GlobalAvgPool) == (readout == "gap")


def test_cnn_refuses_an_unknown_readout_and_no_layers() -> None:
    with pytest.raises(WidenetError, match="readout must be one of flatten, gap"):
        cnn(1, (8, 8), 4, 2, readout="max")
    with pytest.raises(WidenetError, match="depth"):
        cnn(1, (8, 8), 4, 0)
