"""Which modules' outputs are a model's hidden features, and reading them on a probe set.

The feature monitors (feature movement, soft ranks) need hidden features H^l (n points x m_l
features) of any torch module. They come from forward hooks on modules, named by the user or
found for two kinds of model whose structure says unambiguously where the features are:

- a widenet MLP: h_l = phi(z_l) of each hidden layer l = 1..L (labels "1".."L");
- an ``nn.Sequential`` (torch's or widenet.nn's, nested Sequentials read as one chain): the
  outputs of its activation modules (widenet.nn.Activation and torch.nn's activation layers
  other than the softmax family), in order, except a final one (that is the output); labels
  "1".."k".

For any other model nothing is guessed: :func:`feature_layers` raises a
:class:`~widenet.errors.WidenetError` that says how to name the modules. Named modules (objects
taken from the model, or their names in ``model.named_modules()`` such as ``"fc1"`` or
``"blocks.0.act"``) are labelled by those names. A feature of more than two dimensions (conv
channels x positions) is flattened to (n, -1). Hooks live only for the duration of one forward
pass and are removed even when it raises (:func:`~widenet.diagnostics.features.module_outputs`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from widenet.diagnostics.features import module_outputs
from widenet.errors import WidenetError
from widenet.models import MLP
from widenet.nn import Activation

#: torch.nn activation layers that normalize over a dimension: an output, not hidden features.
_OUTPUT_ACTIVATIONS = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d,
                       nn.MultiheadAttention)

FeatureModules = Sequence[nn.Module | str]

HOW_TO_NAME = ("name the modules whose outputs are the hidden features, e.g. "
               "modules=[model.fc1, model.act2] or modules=['fc1', 'act2'] (for "
               "default_monitors: feature_modules=...)")


@dataclass(frozen=True)
class FeatureLayers:
    """The modules hooked for hidden features, their column labels, and a map applied to each
    captured output (phi for a widenet MLP's dense layers, the identity otherwise)."""

    labels: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None

    def read(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """[H^1, ..., H^k] on x, each detached and of shape (n, m_l)."""
        outputs = module_outputs(model, x, list(self.modules))
        if self.transform is not None:
            with torch.no_grad():
                outputs = [self.transform(h) for h in outputs]
        return [h.reshape(h.shape[0], -1) if h.ndim > 2 else h for h in outputs]


def is_activation_module(module: nn.Module) -> bool:
    """widenet.nn.Activation or one of torch.nn's activation layers except the softmax family."""
    if isinstance(module, Activation):
        return True
    return (type(module).__module__ == "torch.nn.modules.activation"
            and not isinstance(module, _OUTPUT_ACTIVATIONS))


def _chain(sequential: nn.Sequential) -> list[nn.Module]:
    """The modules a Sequential runs, in order (repeats included), nested Sequentials
    expanded."""
    return list(itertools.chain.from_iterable(
        _chain(child) if isinstance(child, nn.Sequential) else [child] for child in sequential))


def _automatic(model: nn.Module) -> FeatureLayers:
    if isinstance(model, MLP):
        return FeatureLayers(tuple(str(layer) for layer in range(1, model.depth + 1)),
                             tuple(model.layers[:-1]), model.activation)
    if not isinstance(model, nn.Sequential):
        raise WidenetError(f"cannot tell which modules of {type(model).__name__} give its hidden "
                           f"features (only a widenet MLP's and an nn.Sequential's are found "
                           f"automatically); {HOW_TO_NAME}")
    chain = _chain(model)
    activations = [module for module in chain[:-1] if is_activation_module(module)]
    if not activations:
        raise WidenetError(f"the {type(model).__name__} has no activation module before its "
                           f"output, so its hidden features are unknown; {HOW_TO_NAME}")
    if len({id(module) for module in activations}) != len(activations):
        raise WidenetError(f"the {type(model).__name__} runs one activation module at several "
                           f"places, so hooks cannot tell its layers apart; {HOW_TO_NAME}")
    return FeatureLayers(tuple(str(layer) for layer in range(1, len(activations) + 1)),
                         tuple(activations))


def _named(model: nn.Module, modules: FeatureModules) -> FeatureLayers:
    if isinstance(modules, str | nn.Module) or not isinstance(modules, Sequence) or not modules:
        raise WidenetError(f"feature modules must be a non-empty list of modules or module names, "
                           f"got {modules!r}")
    names = {id(module): name for name, module in model.named_modules()}
    labels, chosen = [], []
    for index, item in enumerate(modules):
        if isinstance(item, str):
            try:
                module = model.get_submodule(item)
            except AttributeError:
                known = ", ".join(repr(name) for name in list(names.values())[1:8])
                raise WidenetError(f"{type(model).__name__} has no submodule {item!r}; names "
                                   f"are those of model.named_modules(), e.g. {known}") from None
            labels.append(item)
        elif isinstance(item, nn.Module) and id(item) in names:
            module = item
            labels.append(names[id(item)] or type(item).__name__)
        else:
            raise WidenetError(f"feature modules[{index}] ({type(item).__name__}) is not a "
                               "submodule of the model; pass modules taken from the model "
                               "itself (model.fc1) or their names ('fc1')")
        chosen.append(module)
    if len(set(labels)) != len(labels):
        raise WidenetError(f"feature modules name one module twice: {labels}")
    return FeatureLayers(tuple(labels), tuple(chosen))


def feature_layers(model: nn.Module, modules: FeatureModules | None = None) -> FeatureLayers:
    """The hidden-feature layers of ``model``: the named ``modules``, or when None the ones found
    automatically (module docstring); raises WidenetError when they cannot be found."""
    return _automatic(model) if modules is None else _named(model, modules)


class HiddenFeatures:
    """The hidden features a monitor reads from the model it is given: the layers are found at
    first use (:func:`feature_layers`), and the last probe's features are kept for the same
    step, parameters and probe, so that monitors sharing one instance share one forward pass.

    With ``skip_unknown`` (what :func:`~widenet.diagnostics.builtin.default_monitors` uses),
    a model whose layers cannot be found automatically gives a warning and no features
    (:meth:`read` returns None) instead of an error; named modules that are wrong always raise.
    """

    def __init__(self, modules: FeatureModules | None = None, *, skip_unknown: bool = False):
        self.modules, self.skip_unknown = modules, skip_unknown
        self._model: nn.Module | None = None
        self._layers: FeatureLayers | None = None
        self._cached: tuple[tuple, torch.Tensor, list[torch.Tensor]] | None = None

    def layers(self, model: nn.Module) -> FeatureLayers | None:
        """The model's feature layers, or None when they are unknown and skipping is on."""
        if model is not self._model:
            self._cached = None
            try:
                self._layers = feature_layers(model, self.modules)
            except WidenetError as error:
                if not self.skip_unknown or self.modules is not None:
                    raise
                warnings.warn(f"feature movement and soft ranks left out: {error}",
                              stacklevel=2)
                self._layers = None
            self._model = model
        return self._layers

    def read(self, model: nn.Module, x: torch.Tensor, step: int
             ) -> list[tuple[str, torch.Tensor]] | None:
        """[(label, H^l on x)] for each feature layer at this step, or None (see
        :meth:`layers`)."""
        layers = self.layers(model)
        if layers is None:
            return None
        key = (step, x.data_ptr(), x.shape, x.stride(), x.dtype, x.device, x._version,
               tuple(p._version for p in model.parameters()))
        if self._cached is None or self._cached[0] != key:  # the cache holds x: no address reuse
            self._cached = (key, x, layers.read(model, x))
        return list(zip(layers.labels, self._cached[2], strict=True))
