"""``neucf serve``: a run folder behind an HTTP API and a web page (FastAPI on uvicorn)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from ..errors import Interrupted, UsageError
from .runs import RunDirArg


def _check_port(host: str, port: int) -> None:
    """A busy or forbidden address is one line before the model is loaded, not uvicorn's log."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --host or --port"
        ) from None


def _key(env: str | None, option: str) -> str | None:
    """The key held in the environment variable ``env`` (None when not asked for)."""
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise UsageError(f"{option} {env}: that environment variable is unset or empty; export it first")
    return key


def serve(
    ctx: typer.Context,
    run_dir: RunDirArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes; each loads the model and takes --threads / N torch threads (default 1).")] = 1,
    items: Annotated[Path | None, typer.Option("--items", help="CSV item,title[,...]: titles for data without its own.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Environment variable holding an API key that every API call must send as 'Authorization: Bearer <key>'.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Keep feedback, new items and erasures in this database: a SQLite file (path or sqlite:///PATH) or postgresql://...; outside the run folder. Without it the server keeps nothing.")] = None,
    admin_key_env: Annotated[str | None, typer.Option("--admin-key-env", help="Environment variable holding the key that PUT /items and DELETE /users need (instead of the API key).")] = None,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", help="Folder of the runs retraining writes (shared by every server): with --store, serve the store's live run and swap to each run that goes live, between requests.")] = None,
    retrain_every: Annotated[str | None, typer.Option("--retrain-every", help="Retrain the live run this often (e.g. 30m, 6h, 1d), in a separate process at lower priority, into --runs-dir.")] = None,
    retrain_after: Annotated[int | None, typer.Option("--retrain-after", min=1, help="Retrain once this many events were stored since the last retraining began.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="A retrained run goes live unless its score on the held-out events is worse than the live run's by more than this share (0.02: RMSE at most 2% higher, NDCG@10 at most 2% lower).")] = 0.02,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Run folders kept in --runs-dir (the newest, and always the live one); older ones are deleted.")] = 3,
    window: Annotated[str, typer.Option("--window", help="A positive event on a listed item within this long after the list was served makes it a hit (the online hit rate).")] = "1d",
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="Largest request body in bytes (over it: 413).")] = 1_000_000,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request on stderr (its path, without the query string).")] = True,
):  # fmt: skip
    """Serve a trained run: JSON API (docs at /docs) and a web page at /, until Ctrl-C.
    Example: neucf serve runs/u1 --port 8000"""
    try:
        import uvicorn

        from ..serving.app import SETTINGS_ENV, create_app, log_config
    except ImportError as exc:
        raise UsageError(f"serving needs the serve extra ({exc.name} is missing): pip install 'neucf[serve]'") from None
    from ..retraining.loop import Policy, parse_duration
    from ..serving import RecommendationService
    from ..serving.live import LiveService

    api_key, admin_key = _key(api_key_env, "--api-key-env"), _key(admin_key_env, "--admin-key-env")
    if admin_key is not None and store is None:
        raise UsageError("--admin-key-env guards the feedback endpoints, which need --store")
    every = None if retrain_every is None else parse_duration(retrain_every)
    if (every is not None or retrain_after is not None) and runs_dir is None:
        raise UsageError("--retrain-every and --retrain-after write runs into --runs-dir: give it too")
    if runs_dir is not None and store is None:
        raise UsageError("--runs-dir follows the live run recorded in the feedback store: give --store too")
    if runs_dir is not None:
        runs_dir.mkdir(parents=True, exist_ok=True)
    policy = None if runs_dir is None else Policy(runs_dir.resolve(), every, retrain_after, tolerance, keep)
    service = RecommendationService.from_run(run_dir, items, store, window=parse_duration(window))
    live = LiveService(service, policy, items)
    live.adopt()
    service = live.service
    _check_port(host, port)
    options = dict(host=host, port=port, access_log=access_log, log_level="info", timeout_graceful_shutdown=5,
                   log_config=log_config())  # fmt: skip
    # One torch thread per worker unless --threads says otherwise: a request is a few small
    # products, and idle threads of torch's pool spinning between them took the cores the
    # event loop and the other workers needed (ML-1M load test, one worker: 456 requests/s
    # with one thread against 289-360 with two)
    threads = ctx.parent.params.get("threads") if ctx.parent is not None else None
    threads = max(1, (threads or workers) // workers)
    where = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    kept = "" if service.store is None else f" keeping feedback in {service.store!r}"
    typer.echo(
        f"serving {service.model.name} from {service.run}{kept} on {where} (API docs at {where}/docs), {workers} worker(s) "
        f"of {threads} torch thread(s); Ctrl-C stops",
        err=True,
    )
    if workers == 1:
        import torch

        torch.set_num_threads(threads)
        app = create_app(live, api_key=api_key, max_body=max_body, admin_key=admin_key)
    else:
        # each worker process builds its own app from these settings (the key stays in its variable)
        settings = {"run_dir": service.run, "items": None if items is None else str(items), "store": store,
                    "api_key_env": api_key_env, "admin_key_env": admin_key_env, "max_body": max_body,
                    "threads": threads, "window": service.window,
                    "policy": None if policy is None else {**vars(policy), "runs_dir": str(policy.runs_dir)}}  # fmt: skip
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        # the workers' counters are added up through files in a folder of this server's own
        metrics_dir = tempfile.mkdtemp(prefix="neucf-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        app, options["factory"], options["workers"] = "neucf.serving.app:app_from_environment", True, workers
        del service, live  # loaded here only to check the run: the workers load their own
    # the model's objects live as long as the server: out of the collector's full passes,
    # which walked all of them and held up requests (a server's choice, not the library's)
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(app, **options)
    except Interrupted:
        # uvicorn shut down gracefully, then passed the signal on: stopping is how a server ends
        typer.echo("stopped", err=True)
    finally:
        if workers > 1:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def add_commands(app: typer.Typer) -> None:
    """Register ``serve`` on ``app``."""
    app.command("serve")(serve)
