"""Which class each ``--model`` name means, for each task: the one place that knows model names.

A model class registers itself with :func:`register` in its own module, for the tasks it is
made for (its ``tasks``): one name may mean one class for rating prediction and another for
ranking (``neumf``: :class:`~neucf.models.NeuMF` predicts ratings, the ranking NeuMF ranks
items for lists), or one class for both (``pop``). The command line, comparisons, tuning and
diagnostics look classes up here and ask the class what it can do (its config dataclass, how
it is fitted, its search space), never test a name. Packages outside neucf add models
through the ``neucf.models`` entry-point group (each entry point names a module that
registers its classes when imported).

Examples:
    >>> from neucf.models import registry
    >>> registry.model_class("neumf").__name__, registry.model_class("neumf", "ranking").__name__
    ('NeuMF', 'NeuMFRanking')
    >>> "ease" in registry.model_names("ranking"), "ease" in registry.model_names("rating")
    (True, False)
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .base import Recommender

#: name -> task -> class
_REGISTRY: dict[str, dict[str, type[Recommender]]] = {}
_PLUGINS_LOADED = False
#: the model each task uses when none is named
DEFAULT_MODEL = {"rating": "neumf", "ranking": "hybrid"}


def register(name: str):
    """Class decorator: make a :class:`~neucf.models.Recommender` subclass available as
    ``--model name`` for each of its ``tasks``.

    Examples:
        >>> from neucf.models import GlobalMean
        >>> @register("constant-demo")
        ... class Constant(GlobalMean):
        ...     '''The training mean, under another name.'''
        >>> model_class("constant-demo").name
        'constant-demo'
        >>> unregister("constant-demo")
    """

    def decorate(cls):
        by_task = _REGISTRY.setdefault(name, {})
        for task in cls.tasks:
            known = by_task.get(task)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise ValueError(f"model name {name!r} is taken for {task} by {known.__module__}.{known.__qualname__}")
        cls.name = name
        for task in cls.tasks:
            by_task[task] = cls
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


def model_names(task: str | None = None) -> list[str]:
    """Every registered model name (for ``task``: those made for it), built-in first, in
    registration order."""
    _load_plugins()
    return [name for name, by_task in _REGISTRY.items() if task is None or task in by_task]


def model_classes() -> list[type[Recommender]]:
    """Every registered class once, in registration order (for flags made from their parameters)."""
    _load_plugins()
    return list({cls: None for by_task in _REGISTRY.values() for cls in by_task.values()})


def model_class(name: str, task: str | None = None) -> type[Recommender]:
    """The class registered as ``name`` for ``task`` (None: the name's first task, rating where
    it has one); a :class:`~neucf.errors.UsageError` lists the choices."""
    _load_plugins()
    by_task = _REGISTRY.get(name)
    if by_task is None:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")
    if task is None:
        return by_task.get("rating") or next(iter(by_task.values()))
    from .base import TASKS

    if task not in TASKS:
        raise UsageError(f"task {task!r} is not a task: choose rating or ranking")
    if task not in by_task:
        others = ", ".join(model_names(task))
        raise UsageError(f"the {name} model is not made for the {task} task; for {task} choose one of {others}")
    return by_task[task]


def make_model(name: str, task: str | None = None, **params) -> Recommender:
    """An unfitted model by its registered name and task; parameters are checked by its class.

    Examples:
        >>> make_model("mf", factors=20).config.factors
        20
    """
    cls = model_class(name, task)
    return cls(task=task or cls.tasks[0], **params)
