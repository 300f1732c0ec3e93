"""``neucf serve``: a run folder behind an HTTP API and a web page (FastAPI on uvicorn)."""

from __future__ import annotations

import json
import os
import socket
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


def serve(
    ctx: typer.Context,
    run_dir: RunDirArg,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes; each loads the model and takes --threads / N torch threads (default 1).")] = 1,
    items: Annotated[Path | None, typer.Option("--items", help="CSV item,title[,...]: titles for data without its own.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Environment variable holding an API key that every API call must send as 'Authorization: Bearer <key>'.")] = None,
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
    from ..serving import RecommendationService

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env, "")
        if not api_key:
            raise UsageError(
                f"--api-key-env {api_key_env}: that environment variable is unset or empty; export it first"
            )
    service = RecommendationService.from_run(run_dir, items)
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
    typer.echo(
        f"serving {service.model.name} from {run_dir} on {where} (API docs at {where}/docs), {workers} worker(s) "
        f"of {threads} torch thread(s); Ctrl-C stops",
        err=True,
    )
    if workers == 1:
        import torch

        torch.set_num_threads(threads)
        app = create_app(service, api_key=api_key, max_body=max_body)
    else:
        # each worker process builds its own app from these settings (the key stays in its variable)
        settings = {"run_dir": str(run_dir), "items": None if items is None else str(items),
                    "api_key_env": api_key_env, "max_body": max_body, "threads": threads}  # fmt: skip
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        app, options["factory"], options["workers"] = "neucf.serving.app:app_from_environment", True, workers
        del service  # loaded here only to check the run: the workers load their own
    try:
        uvicorn.run(app, **options)
    except Interrupted:
        # uvicorn shut down gracefully, then passed the signal on: stopping is how a server ends
        typer.echo("stopped", err=True)


def add_commands(app: typer.Typer) -> None:
    """Register ``serve`` on ``app``."""
    app.command("serve")(serve)
