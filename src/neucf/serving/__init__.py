"""Serving a trained run over HTTP: :class:`RecommendationService` (the questions a server
answers, no web involved) and :func:`create_app` (the FastAPI app, with a small web page).

``neucf serve RUN_DIR`` runs the app with uvicorn; the web parts need the ``serve`` extra
(``pip install 'neucf[serve]'``); the service alone needs nothing more than neucf.

Examples:
    >>> service = RecommendationService.from_run("runs/neumf")  # doctest: +SKIP
    >>> service.recommend_user("196", k=3)                      # doctest: +SKIP
"""

from .service import ItemScore, RecommendationService, UnknownId

__all__ = ["ItemScore", "RecommendationService", "UnknownId", "create_app"]


def __getattr__(name):
    # FastAPI is an optional dependency: import it only when the app is asked for
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
