"""What a served model is told after training: users' feedback, items added since, erasures,
kept in a real database (:class:`FeedbackStore`: a SQLite file, the embedded default, or
PostgreSQL for several servers).

``neucf serve RUN --store STORE`` keeps it; ``neucf train --store STORE`` leaves out the rows
of every user erased in it; ``neucf retrain`` (:mod:`neucf.retraining`) learns from it. The store needs SQLAlchemy (installed with neucf) and, for
PostgreSQL, the ``psycopg`` driver (the ``serve`` extra).

Examples:
    >>> store = FeedbackStore("sqlite://")
    >>> store.add([Event("u", "i", 5.0, 1733400000.0, id="e1"), Event("u", "i", 5.0, 1733400000.0, id="e1")])
    1
"""

from .erasure import erased_rows, without_erased
from .store import Event, FeedbackStore, StoredItem, StoreUnavailable, store_url

__all__ = ["Event", "FeedbackStore", "StoreUnavailable", "StoredItem", "erased_rows", "store_url", "without_erased"]
