"""The error types of user errors: bad input, bad params, missing or malformed files, non-finite values.

Every error the library raises for something the user can fix derives from :class:`KdinterpError`.
The ``kdinterp`` command catches this one base (:mod:`kdinterp.cli`) and prints its message as one
line, ``error: <what is wrong, which file (and row or key), the fix>``, with exit status 1; any
other exception is an internal bug and keeps its traceback. ``kdinterp --debug`` re-raises user
errors too. This module imports nothing heavy, so that the CLI can catch the base before any stage
library (torch, Great Expectations) is loaded.
"""

from __future__ import annotations

__all__ = ["KdinterpError", "NonFiniteError", "UnknownLayerError", "UnknownModelError"]


class KdinterpError(Exception):
    """A user error: the message names the file (and row or key) and the fix, on one line."""


class NonFiniteError(KdinterpError, ValueError):
    """A NaN or infinite value where the stage needs finite numbers (weights, logits, activations, losses)."""


class UnknownModelError(KdinterpError, KeyError):
    """A model name (and seed) that params.yaml does not define; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's str() quotes the message
        return str(self.args[0]) if self.args else ""


class UnknownLayerError(KdinterpError, ValueError):
    """A layer name (``dissection.layer``, a feature method's layer) that the model does not have."""
