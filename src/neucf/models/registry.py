"""Which class each ``--model`` name means: the one place that knows model names.

A model class registers itself with :func:`register` in its own module; the command line,
comparisons, tuning and diagnostics look classes up here and ask the class what it can do
(its config dataclass, how it is fitted, its search space), never test a name.
Packages outside neucf add models through the ``neucf.models`` entry-point group (each
entry point names a module that registers its classes when imported).

Example:
    >>> from neucf.models import registry
    >>> registry.model_class("neumf").__name__
    'NeuMF'
    >>> "bias" in registry.model_names()
    True
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .base import Recommender

_REGISTRY: dict[str, type[Recommender]] = {}
_PLUGINS_LOADED = False


def register(name: str):
    """Class decorator: make a :class:`~neucf.models.Recommender` subclass available as ``--model name``.

    Example:
        >>> from neucf.models import GlobalMean
        >>> @register("constant-demo")
        ... class Constant(GlobalMean):
        ...     '''The training mean, under another name.'''
        >>> model_class("constant-demo").name
        'constant-demo'
        >>> unregister("constant-demo")
    """

    def decorate(cls):
        known = _REGISTRY.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} is taken by {known.__module__}.{known.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister(name: str) -> None:
    """Remove a name (for tests and notebooks that register throw-away models)."""
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for entry in entry_points(group="neucf.models"):
        entry.load()


def model_names() -> list[str]:
    """Every registered model name, built-in first, in registration order."""
    _load_plugins()
    return list(_REGISTRY)


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; a :class:`~neucf.errors.UsageError` lists the choices."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def make_model(name: str, **params) -> Recommender:
    """An unfitted model by its registered name; parameters are checked by its class.

    Example:
        >>> make_model("mf", factors=20).config.factors
        20
    """
    return model_class(name)(**params)
