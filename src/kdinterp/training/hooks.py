"""Reading a named layer's output during a forward pass (the idea of dissect's ``InstrumentedModel``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from kdinterp.core.errors import UnknownLayerError

__all__ = ["LayerOutput", "retain_layer"]


class LayerOutput:
    """Holds the most recent output of one module; filled by :func:`retain_layer`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.value: torch.Tensor | None = None

    def get(self) -> torch.Tensor:
        """The retained output, e.g. ``(N, C, H, W)`` for a ResNet stage.

        Raises:
            RuntimeError: the model has not run since the hook was installed.
        """
        if self.value is None:
            raise RuntimeError(f"layer '{self.name}' has not produced an output yet; run the model first")
        return self.value


@contextlib.contextmanager
def retain_layer(model: nn.Module, name: str) -> Iterator[LayerOutput]:
    """Install a forward hook on ``model.get_submodule(name)``; remove it on exit.

    Args:
        model: any module.
        name: dotted module path from ``model.named_modules()``, e.g. ``"layer4"``.

    Yields:
        A :class:`LayerOutput` updated on every forward pass.

    Raises:
        UnknownLayerError: (a ``ValueError``) no module of that name; the message lists the top-level children.
    """
    try:
        module = model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise UnknownLayerError(f"model has no layer '{name}' (top-level layers: {children}); name one of them in "
                                "params.yaml (dissection.layer, or the distillation method's layer options)") from None
    retained = LayerOutput(name)

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        retained.value = output

    handle = module.register_forward_hook(hook)
    try:
        yield retained
    finally:
        handle.remove()
