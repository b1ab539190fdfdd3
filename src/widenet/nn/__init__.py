"""Layers that train like torch layers and carry what their infinite-width limit needs.

Every model built from these (and from the plain torch layers listed in
docs/architectures.md) has exact NNGP and NTK limits, computed by
:func:`widenet.infinite_kernels`. The kernel maps live in :mod:`widenet.kernels.maps`; this
package never imports them.
"""

from widenet.nn.architectures import cnn, myrtle5
from widenet.nn.containers import Residual, Sequential, Sum, resolve_weight_stds
from widenet.nn.conv import Conv1d, Conv2d
from widenet.nn.dense import Dense
from widenet.nn.elementwise import Activation, Flatten, LayerNorm
from widenet.nn.pooling import AvgPool1d, AvgPool2d, GlobalAvgPool

__all__ = ["Activation", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d", "Dense", "Flatten",
           "GlobalAvgPool", "LayerNorm", "Residual", "Sequential", "Sum", "cnn", "myrtle5",
           "resolve_weight_stds"]
