"""The FastAPI app over a :class:`~neucf.serving.RecommendationService`.

Endpoints (JSON, ids as text): ``GET /health``, ``GET /model``, ``GET /users/{user}/recommendations``,
``POST /predictions``, ``POST /recommendations``, ``GET /items`` (``?newest=true``: the items known
only by attributes), ``GET /metrics`` (Prometheus' text format); with a feedback store also ``POST
/feedback``, ``GET /users/{user}/feedback``, ``DELETE /users/{user}``, ``PUT /items/{item}`` (a
failing database: 503), ``GET /dashboard/data`` and the dashboard at ``/dashboard``; the web page at ``/`` (its files
under ``/static``) and the API docs at ``/docs`` and ``/openapi.json`` with their assets served by
the app itself (fastapi-offline), so nothing is fetched from a CDN.

Errors: an unknown user or item is 404; a malformed body, a wrong type, a number JSON cannot
hold (``NaN``, ``Infinity``, ``1e400``), ``k`` outside 1..1000, a rating outside the scale or a
history over 10,000 ratings is 422 with FastAPI's structured ``detail``; a body over
``max_body`` bytes is 413, one that stalls 408; with ``api_key`` set, an API call without
``Authorization: Bearer <key>`` is 401 (``/health``, the page, its files and the docs stay
open). Every ``GET`` route answers ``HEAD`` too.

The endpoints are ``async`` and call the service in the event loop: one model call at a time
per worker process (a pool of threads was slower and grew memory).

Examples:
    >>> from fastapi.testclient import TestClient                   # doctest: +SKIP
    >>> client = TestClient(create_app(RecommendationService.from_run("runs/neumf")))  # doctest: +SKIP
    >>> client.get("/health").json()                                  # doctest: +SKIP
    {'status': 'ok', 'model': 'neumf'}
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import os
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import __version__
from ..errors import NeucfError
from ..feedback import Event, StoreUnavailable
from ..feedback.store import MAX_ID
from ..retraining.loop import Policy
from .live import LiveService
from .service import MAX_HISTORY, InvalidRequest, RecommendationService, UnknownId
from .telemetry import Telemetry

STATIC = Path(__file__).parent / "static"
#: default cap on a request body: room for a history of 10,000 ratings
MAX_BODY = 1_000_000
#: the most items one prediction request may ask about
MAX_ITEMS = 10_000
#: the most events one feedback request may hold
MAX_EVENTS = 10_000


# ---- request and response bodies --------------------------------------------------------------
class Rating(BaseModel):
    """One item of a new user's history, with its rating or, for an interaction without one
    (a ranking run; the only kind an implicit run takes), without."""

    model_config = ConfigDict(extra="forbid")
    item: str = Field(min_length=1, max_length=256, description="Raw item id, as text.")
    rating: float | None = Field(
        None, strict=True, allow_inf_nan=False,
        description="Inside the model's rating scale (see /model); leave it out for an interaction without a rating.",
    )  # fmt: skip


#: a new user's attributes: column -> value (numbers for numeric columns, labels joined by |)
AttributeValues = dict[str, str | float | int | None]
ATTRIBUTES_HELP = (
    'A new user\'s attributes, column -> value (e.g. {"age": 25, "gender": "F"}), for a model that '
    "reads them: used where the ratings hold no item the model can read."
)
IGNORED_ATTRIBUTES = (
    "The new user's attributes the model does not read (a column it does not know): left out, not an error."
)


class PredictionRequest(BaseModel):
    """Items to predict for a known ``user`` or for a new user given by ``ratings`` and/or
    ``attributes`` (a known user, or a new one)."""

    # a known user or a new one, said in the schema too; none of them may be null
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["user"]}, {"anyOf": [{"required": ["ratings"]},
                                                                        {"required": ["attributes"]}]}]},
    )  # fmt: skip
    user: str = Field(None, min_length=1, max_length=256, description="A user the model knows.")
    ratings: list[Rating] = Field(None, max_length=MAX_HISTORY, description="A new user's ratings.")
    attributes: AttributeValues = Field(None, max_length=256, description=ATTRIBUTES_HELP)
    items: list[str] = Field(min_length=1, max_length=MAX_ITEMS, description="Raw item ids to predict.")

    @model_validator(mode="after")
    def _one_user(self):
        if (self.user is None) == (self.ratings is None and self.attributes is None):
            raise ValueError("give either user (a known user) or ratings and/or attributes (a new user's), not both")
        return self


class RecommendationRequest(BaseModel):
    """A new user's ratings and/or attributes, how many items to recommend, and of which."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"anyOf": [{"required": ["ratings"]}, {"required": ["attributes"]}]}
    )
    ratings: list[Rating] = Field(None, max_length=MAX_HISTORY, description="The user's ratings (may be empty).")
    attributes: AttributeValues = Field(None, max_length=256, description=ATTRIBUTES_HELP)
    candidates: list[str] = Field(
        None, max_length=MAX_ITEMS,
        description="Rank only these items (e.g. this week's arrivals); those the model does not know go to ignored.",
    )  # fmt: skip
    k: int = Field(10, ge=1, le=1000, description="How many items.")

    @model_validator(mode="after")
    def _some_user(self):
        if self.ratings is None and self.attributes is None:
            raise ValueError("give the new user's ratings (may be empty) and/or their attributes")
        return self

    @field_validator("k", mode="before")
    @classmethod
    def _number(cls, value):
        # JSON Schema's integer includes 3.0; text and true are not numbers
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("k must be a whole number")
        return value


class FeedbackEvent(BaseModel):
    """One thing a user did: a rating, or (for a ranking run; the only kind an implicit run
    takes) an interaction without one."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=MAX_ID, description="Raw user id: any, trained or not.")
    item: str = Field(min_length=1, max_length=MAX_ID, description="Raw item id: any, in the catalogue or not.")
    rating: float | None = Field(
        None, strict=True, allow_inf_nan=False,
        description="Inside the model's rating scale; needed by a rating run, absent for an implicit run.",
    )  # fmt: skip
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False, description="Unix seconds (default: now).")
    id: str | None = Field(
        None, min_length=1, max_length=MAX_ID,
        description="The client's id of the event: an event whose id was stored before is not stored again.",
    )  # fmt: skip


class FeedbackRequest(BaseModel):
    """Events to store, all or none."""

    model_config = ConfigDict(extra="forbid")
    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class Stored(BaseModel):
    """How many of the events were new (an event whose id was stored before is not)."""

    stored: int


class StoredEvent(BaseModel):
    """A stored event."""

    item: str
    rating: float | None = None
    timestamp: float


class UserFeedback(BaseModel):
    """A user's stored events, oldest first."""

    user: str
    events: list[StoredEvent]


class ItemRequest(BaseModel):
    """An item to create or replace: title and attributes (column -> value; labels as a list)."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, max_length=1000)
    attributes: dict[str, str | float | int | list[str] | None] = Field(default_factory=dict, max_length=256)


class Health(BaseModel):
    """The server is up, serving this model."""

    status: str
    model: str


class ModelInfo(BaseModel):
    """What the server's model is and how well it did on its run's test part."""

    model: str
    task: str = Field(description="rating (predictions are ratings) or ranking (they are ranking scores).")
    implicit: bool = Field(description="Whether the model learnt from interactions without ratings.")
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(description="The run's test metrics (empty when it has none).")
    users: int
    items: int
    scale: list[float] | None = Field(description="The rating scale (null for interactions without ratings).")
    titles: bool
    feedback: bool = Field(description="Whether the server keeps feedback (started with --store).")
    run: str | None = Field(None, description="The run folder served (absent for a model given in Python).")
    trained_at: str | None = Field(None, description="When the run was written (ISO 8601, UTC).")


class Prediction(BaseModel):
    """One predicted rating."""

    item: str
    prediction: float


class Predictions(BaseModel):
    """Predicted ratings (a ranking run's: scores), in the order the items were asked for."""

    predictions: list[Prediction]
    ignored: list[str] = Field(default_factory=list, description="Items of the history the model does not know.")
    ignored_attributes: list[str] = Field(default_factory=list, description=IGNORED_ATTRIBUTES)


class Recommended(BaseModel):
    """One recommended item: its predicted rating and, where the data has one, its title."""

    item: str
    prediction: float
    title: str | None = None


class Recommendations(BaseModel):
    """A top-k list."""

    user: str | None = Field(None, description="The user asked about (absent for a new user).")
    items: list[Recommended] = Field(description="Best first.")
    ignored: list[str] = Field(
        default_factory=list,
        description="Items of the history or the candidates the model does not know: left out, not an error.",
    )
    ignored_attributes: list[str] = Field(default_factory=list, description=IGNORED_ATTRIBUTES)


class Item(BaseModel):
    """An item found by title."""

    item: str
    title: str | None = None


class Items(BaseModel):
    """Items found by title, most rated first."""

    items: list[Item]


class ErrorDetail(BaseModel):
    """What went wrong, in one line."""

    detail: str


_NOT_FOUND = {404: {"model": ErrorDetail, "description": "Unknown user or item."}}


# ---- the parts around the endpoints -----------------------------------------------------------
class HeadAsGet:
    """ASGI middleware answering ``HEAD`` on every ``GET`` route (load balancers probe with it):
    the request goes through as a ``GET`` and its answer is sent without the body (the
    headers, ``content-length`` included, as the ``GET`` would have them)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class Timing:
    """ASGI middleware counting each request and its time by route template (see
    :mod:`~neucf.serving.telemetry`)."""

    def __init__(self, app, telemetry: Telemetry):
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.telemetry.observe(route, scope["method"], status, time.perf_counter() - start)


class BodyLimit:
    """ASGI middleware answering 413 to a request body over ``max_bytes`` (declared or streamed),
    and 408 to one whose next part takes more than ``timeout`` seconds to arrive (a client
    sending a byte a second would hold a connection open without end; uvicorn itself has no
    such limit on bodies, nor any on headers: see the deployment notes for a proxy's)."""

    def __init__(self, app, max_bytes: int, timeout: float = 30.0):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        received, refused = 0, False

        async def limited_receive():
            # past the cap or the wait, answer 413 / 408 at once and tell the app the client
            # left: whatever the app does with a broken body (FastAPI makes it a 400) is never sent
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                refused = True
                await self._refuse(send, 408, f"request body not received within {self.timeout:g} s")
                return {"type": "http.disconnect"}
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                refused = True
                await self._refuse(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, send, status: int = 413, detail: str | None = None):
        body = json.dumps({"detail": detail or f"request body over {self.max_bytes:,} bytes"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 408:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _finite(value):
    """``value`` with every float that JSON cannot hold (NaN, infinities) written as text, so
    that an answer about a bad number can always be sent (``"input": NaN`` cannot)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def _unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 answer, with the inputs it quotes made JSON-safe (see :func:`_finite`)."""
    return JSONResponse({"detail": _finite(jsonable_encoder(exc.errors()))}, status_code=422)


class PathOnly(logging.Filter):
    """Access-log filter: a request is logged by its path, without the query string (which
    may carry a key, as in ``?api_key=...``). Used by :func:`log_config`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def log_config() -> dict:
    """uvicorn's logging set-up with every line on stderr (the access log included, which
    uvicorn sends to stdout) and paths logged without their query strings (:class:`PathOnly`)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {**config.get("filters", {}), "path_only": {"()": f"{__name__}.PathOnly"}}
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["handlers"]["access"]["filters"] = ["path_only"]
    return config


def _bearer_check(api_key: str):
    expected = api_key.encode()
    scheme = HTTPBearer(auto_error=False, description="The key given to neucf serve with --api-key-env.")

    # a default, not Annotated[...]: the annotations are strings here and ``scheme`` is local
    def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)):
        given = credentials.credentials.encode() if credentials is not None else b""
        # constant time: the answer's timing says nothing about how much of the key matched
        if not secrets.compare_digest(given, expected):
            raise HTTPException(401, "missing or wrong API key: send Authorization: Bearer <key>",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    return check


def _invalid(where: tuple, message: str) -> RequestValidationError:
    """A 422 in FastAPI's own structured form, so every 422 reads alike."""
    return RequestValidationError([{"loc": where, "msg": message, "type": "value_error"}])


def create_app(
    service: RecommendationService | LiveService,
    api_key: str | None = None,
    max_body: int = MAX_BODY,
    body_timeout: float = 30.0,
    admin_key: str | None = None,
) -> FastAPI:
    """The app answering from ``service`` (a :class:`~neucf.serving.live.LiveService` swaps runs
    under it, and its upkeep runs while the app does); ``api_key`` guards the API endpoints (see
    the module), ``admin_key`` (instead) those that change the catalogue or erase a user; a body
    over ``max_body`` bytes is 413, one slower than ``body_timeout`` seconds a part 408."""
    live = service if isinstance(service, LiveService) else LiveService(service)
    telemetry = Telemetry()

    @asynccontextmanager
    async def lifespan(app):
        live.start()
        try:
            yield
        finally:
            await asyncio.to_thread(live.stop)

    app = FastAPIOffline(
        title="neucf",
        version=__version__,
        description=f"Rating predictions and recommendations from a trained {live.service.model.name} model.",
        lifespan=lifespan,
    )
    app.add_middleware(Timing, telemetry=telemetry)
    app.add_middleware(BodyLimit, max_bytes=max_body, timeout=body_timeout)
    app.add_middleware(HeadAsGet)
    app.add_exception_handler(RequestValidationError, _unprocessable)
    schema_of = app.openapi

    def openapi() -> dict:
        # the rating scale is the model's: the schema says so, for clients and schema fuzzers
        schema = schema_of()
        model, bodies = live.service.model, schema["components"]["schemas"]
        for name in ("Rating", "FeedbackEvent"):
            if name not in bodies:
                continue
            body, rating = bodies[name], bodies[name]["properties"]["rating"]
            if model.implicit:  # interactions only: no rating
                body["properties"]["rating"] = {"type": "null", "description": "An implicit run takes no rating."}
                continue
            rating["minimum"], rating["maximum"] = map(float, model.scale)
            if model.task == "rating":  # a rating model needs every rating: a number, never null
                low, high = rating.pop("minimum"), rating.pop("maximum")
                rating.pop("anyOf", None)
                rating.update(type="number", minimum=low, maximum=high)
                body["required"] = [*body.get("required", []), "rating"]
        return schema

    app.openapi = openapi

    @app.exception_handler(UnknownId)
    async def _unknown(request: Request, exc: UnknownId):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InvalidRequest)
    async def _invalid_ratings(request: Request, exc: InvalidRequest):
        return await _unprocessable(request, _invalid(("body", exc.field), str(exc)))

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(NeucfError)
    async def _cannot(request: Request, exc: NeucfError):
        # the request asked for something this model cannot answer (e.g. fold-in it lacks)
        return await _unprocessable(request, _invalid(("body",), str(exc)))

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=Health, tags=["service"])
    async def health():
        """Whether the server is up, and its model's name (never needs the API key)."""
        return {"status": "ok", "model": live.service.model.name}

    guarded = [Depends(_bearer_check(api_key))] if api_key else []
    errors = {401: {"model": ErrorDetail, "description": "Missing or wrong API key."}} if api_key else {}
    api = APIRouter(dependencies=guarded, responses=errors)

    @api.get("/model", response_model=ModelInfo, tags=["service"])
    async def model_info():
        """The model: name, configuration, test metrics, numbers of users and items, rating scale."""
        return live.service.describe()

    @api.get("/users/{user}/recommendations", response_model=Recommendations, response_model_exclude_none=True,
             responses=_NOT_FOUND, tags=["recommendations"])  # fmt: skip
    async def user_recommendations(
        user: Annotated[str, PathParam(description="A user the model knows (or, with --store, the store).")],
        k: Annotated[int, Query(ge=1, le=1000, description="How many items.")] = 10,
        exclude_seen: Annotated[bool, Query(description="Leave out items the user rated in training.")] = True,
    ):
        """A known user's top k, best first. With a feedback store, the user's stored events count
        at once: merged into a trained user's history, or folded in for a user known only to the
        store; the items they gave feedback on are left out unless ``exclude_seen`` is false."""
        items = live.service.recommend_user(user, k=k, exclude_seen=exclude_seen)
        telemetry.lists_served.inc()
        return {"user": user, "items": [vars(x) for x in items]}

    @api.post("/recommendations", response_model=Recommendations, response_model_exclude_none=True,
              responses=_NOT_FOUND, tags=["recommendations"])  # fmt: skip
    async def new_user_recommendations(body: RecommendationRequest):
        """The top k for a new user given by their history (fold-in), leaving out its items, or by
        their attributes where the history holds no item the model can read; of ``candidates``
        only, when given. Items the model does not know are ignored and listed in ``ignored``."""
        items, ignored, unread = live.service.recommend_new(
            [(r.item, r.rating) for r in body.ratings or []],
            k=body.k,
            attributes=body.attributes,
            candidates=body.candidates,
        )
        return {"user": None, "items": [vars(x) for x in items], "ignored": ignored, "ignored_attributes": unread}

    @api.post("/predictions", response_model=Predictions, responses=_NOT_FOUND, tags=["predictions"])
    async def predictions(body: PredictionRequest):
        """Predicted ratings of ``items``, in their order, for a known ``user`` or a new user's
        ``ratings`` and/or ``attributes``."""
        ratings = None if body.ratings is None else [(r.item, r.rating) for r in body.ratings]
        values, ignored, unread = live.service.predict(
            body.items, user=body.user, ratings=ratings, attributes=body.attributes
        )
        predicted = [{"item": i, "prediction": p} for i, p in zip(body.items, values)]
        return {"predictions": predicted, "ignored": ignored, "ignored_attributes": unread}

    @api.get("/items", response_model=Items, response_model_exclude_none=True, tags=["items"])
    async def items(
        q: Annotated[str, Query(max_length=256, description="Text the title contains (any case).")] = "",
        limit: Annotated[int, Query(ge=1, le=1000, description="How many items.")] = 20,
        newest: Annotated[bool, Query(description="The newest items instead: nobody rated them in training, the model knows them by their attributes; added last first.")] = False,
    ):  # fmt: skip
        """Items whose title contains ``q`` (their id, when the data has no titles), most rated first;
        or, with ``newest``, the items known only by their attributes, newest first."""
        return {"items": live.service.newest(limit) if newest else live.service.search(q, limit)}

    @api.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics():
        """Prometheus' text format: requests and their time by route, feedback events and lists
        served (all workers), the online hit rate and the live run (read from the store)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(telemetry.exposition(live), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api)
    if live.service.store is not None:
        _feedback_routes(app, live, guarded, errors, admin_key, telemetry)
    return app


def _feedback_routes(
    app: FastAPI, live: LiveService, guarded: list, errors: dict, admin_key, telemetry: Telemetry
) -> None:
    """The endpoints of a server that keeps feedback. They run in the event loop, as the others
    do: in a thread of FastAPI's pool a write waited for the interpreter lock at each of its
    database calls while the loop computed lists, and ingestion under a list load collapsed;
    a commit holds the loop for about a millisecond."""
    api = APIRouter(dependencies=guarded, responses=errors)
    if admin_key:
        admin = APIRouter(dependencies=[Depends(_bearer_check(admin_key))],
                          responses={401: {"model": ErrorDetail, "description": "Missing or wrong admin key."}})  # fmt: skip
    else:
        admin = api
    down = {503: {"model": ErrorDetail, "description": "The feedback store is unavailable; nothing was stored."}}

    @api.post("/feedback", response_model=Stored, responses=down, tags=["feedback"])
    async def post_feedback(body: FeedbackRequest):
        """Store events (ratings or interactions) of any users and items, all or none: answered
        only after the database committed them. A later event on the same user and item replaces
        the earlier one; an event whose ``id`` was stored before is not stored again."""
        now = time.time()
        events = [Event(e.user, e.item, e.rating, now if e.timestamp is None else e.timestamp, e.id)
                  for e in body.events]  # fmt: skip
        stored = live.service.record(events)
        telemetry.feedback_events.inc(stored)
        return {"stored": stored}

    @app.get("/dashboard", include_in_schema=False)
    def dashboard_page():
        return FileResponse(STATIC / "dashboard.html")

    @api.get("/dashboard/data", tags=["service"], responses=down)
    def dashboard_data(days: Annotated[float, Query(gt=0, le=366, description="How many days back.")] = 7.0) -> dict:
        """The dashboard's figures (SVG) and numbers over the last ``days``, from the store. Drawn
        in a thread of the pool, off the event loop."""
        from .dashboard import dashboard

        live.service.flush()
        return dashboard(live.service.store, days)

    @api.get("/users/{user}/feedback", response_model=UserFeedback, responses={**_NOT_FOUND, **down},
             tags=["feedback"])  # fmt: skip
    async def user_feedback(user: Annotated[str, PathParam(max_length=MAX_ID)]):
        """A user's stored events, oldest first (404 when there are none)."""
        events = live.service.feedback(user)
        return {
            "user": user,
            "events": [{"item": e.item, "rating": e.rating, "timestamp": e.timestamp} for e in events],
        }

    @admin.delete("/users/{user}", status_code=204, responses=down, tags=["feedback"])
    async def erase_user(user: Annotated[str, PathParam(max_length=MAX_ID)]):
        """Erase a user: their stored events are deleted and the model stops answering for the id
        at once, and every later training leaves out their rows (204, also for an id never seen)."""
        live.service.erase(user)
        return Response(status_code=204)

    @admin.put("/items/{item}", responses=down, tags=["items"])
    async def put_item(item: Annotated[str, PathParam(min_length=1, max_length=MAX_ID)], body: ItemRequest) -> dict:
        """Create or replace an item: it joins the catalogue at once (found by ``GET /items``;
        listed from its attributes by a model that reads item attributes)."""
        live.service.put_item(item, body.title, body.attributes)
        return {"item": item, "title": body.title, "attributes": body.attributes}

    app.include_router(api)
    if admin is not api:
        app.include_router(admin)


#: the environment variable through which ``neucf serve --workers N`` hands its settings to workers
SETTINGS_ENV = "NEUCF_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app of the settings ``neucf serve`` put in ``NEUCF_SERVE_SETTINGS`` (uvicorn's factory
    for several worker processes, each of which loads the model itself)."""
    import torch

    settings = json.loads(os.environ[SETTINGS_ENV])
    torch.set_num_threads(settings["threads"])
    service = RecommendationService.from_run(
        settings["run_dir"], settings.get("items"), settings.get("store"), window=settings["window"]
    )
    policy = settings.get("policy")
    live = LiveService(service, None if policy is None else Policy(**policy), settings.get("items"))
    live.adopt()
    key_env, admin_env = settings.get("api_key_env"), settings.get("admin_key_env")
    return create_app(
        live,
        api_key=os.environ[key_env] if key_env else None,
        max_body=settings["max_body"],
        admin_key=os.environ[admin_env] if admin_env else None,
    )
