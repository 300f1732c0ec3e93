"""Retraining a run on what its server was told (:mod:`neucf.retraining.core`: ``neucf
retrain``), and retraining on a schedule inside a server, with the new run going live when it
is judged no worse (:mod:`neucf.retraining.loop`: ``neucf serve --retrain-every``,
``neucf rollback``).

Examples:
    >>> from neucf.retraining import parse_duration
    >>> parse_duration("6h")
    21600.0
"""

from .core import K, Retraining, live_scores, new_scores, retrain, retraining_data, rows_of, training_ratings
from .loop import Policy, Retrainer, due, judge, parse_duration, prune, rollback, trained_at

__all__ = [
    "K", "Policy", "Retrainer", "Retraining", "due", "judge", "live_scores", "new_scores", "parse_duration",
    "prune", "retrain", "retraining_data", "rollback", "rows_of", "trained_at", "training_ratings",
]  # fmt: skip
