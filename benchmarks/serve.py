"""Load test of ``neucf serve``: throughput, latency percentiles and errors per endpoint.

Starts ``neucf serve RUN --no-access-log`` on 127.0.0.1, warms it up, then sends a bounded mix
at each concurrency level (one thread per simultaneous client, each on its own keep-alive
connection): known-user top-10 (``GET /users/{u}/recommendations?k=10``), predictions for a
known user (``POST /predictions``, 10 items) and new-user fold-in top-10 (``POST
/recommendations`` from 20 ratings), in equal shares, users and items drawn with a seed.
Prints one table and writes JSON; the server's resident memory (from /proc, Linux) is read
after the warm-up and after the run. Only loopback, bounded loops; the server is stopped at
the end.

    python benchmarks/serve.py --run runs/ml1m-neumf [--requests 5000] [--concurrency 8,32]

The target (issue 11): with an ML-1M NeuMF run on a 2-core machine, p99 <= 50 ms for the
known-user top-10 at concurrency 8, no errors, RSS after the run within 10% of after warm-up.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neucf.runs import read_run

KINDS = ("user-top10", "predict", "foldin-top10")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker processes), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


def requests_mix(model, n: int, seed: int) -> list[tuple[str, str, str, bytes | None]]:
    """``n`` requests (kind, method, path, body), the kinds in turn, ids drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    users = model.user_ids[model.known_users]
    items = model.item_ids[model.known_items]
    out = []
    for r in range(n):
        kind = KINDS[r % len(KINDS)]
        if kind == "user-top10":
            out.append((kind, "GET", f"/users/{rng.choice(users)}/recommendations?k=10", None))
        elif kind == "predict":
            body = {"user": str(rng.choice(users)), "items": [str(i) for i in rng.choice(items, 10, replace=False)]}
            out.append((kind, "POST", "/predictions", json.dumps(body).encode()))
        else:
            rated = rng.choice(items, 20, replace=False)
            ratings = [{"item": str(i), "rating": float(rng.integers(1, 6))} for i in rated]
            out.append((kind, "POST", "/recommendations", json.dumps({"ratings": ratings, "k": 10}).encode()))
    return out


def send_all(port: int, work: list, concurrency: int) -> tuple[list[tuple[str, float, bool]], float]:
    """Send ``work`` from ``concurrency`` clients; (kind, seconds, ok) per request, wall seconds."""
    local = threading.local()

    def one(request):
        kind, method, path, body = request
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        start = time.perf_counter()
        try:
            local.conn.request(method, path, body=body, headers=headers)
            response = local.conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            local.conn.close()
            del local.conn
            ok = False
        return kind, time.perf_counter() - start, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, work))
    return results, time.perf_counter() - start


def summary(results, wall: float, concurrency: int) -> list[dict]:
    rows = []
    for kind in (*KINDS, "all"):
        mine = [r for r in results if kind in ("all", r[0])]
        ms = np.array([r[1] for r in mine]) * 1000
        rows.append({
            "concurrency": concurrency,
            "endpoint": kind,
            "requests": len(mine),
            "per_second": len(mine) / wall,
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)),
            "errors": sum(not r[2] for r in mine),
        })  # fmt: skip
    return rows


def wait_healthy(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited ({server.returncode}): {server.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("the server did not answer /health in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder (neucf train --out)")
    parser.add_argument("--requests", type=int, default=5000, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="the server's torch threads (neucf --threads)")
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    model = read_run(args.run)
    name, n_users, n_items = model.name, int(model.known_users.sum()), int(model.known_items.sum())
    warmup = requests_mix(model, args.warmup, args.seed + 1000)
    mixes = [requests_mix(model, args.requests, args.seed + i) for i in range(len(levels))]
    # the client's own pauses count in every latency: drop the model, and keep the collector
    # from walking what is left at every full pass
    del model
    gc.collect()
    gc.freeze()
    port = free_port()
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    command = [sys.executable, "-m", "neucf", *threads, "serve", str(args.run), "--port", str(port), "--no-access-log",
               "--workers", str(args.workers)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, server)
        send_all(port, warmup, 4)
        rss_warm = rss_mb(server.pid)
        rows = []
        for level, work in zip(levels, mixes):
            results, wall = send_all(port, work, level)
            rows += summary(results, wall, level)
        rss_after = rss_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"{name} from {args.run}: {n_users:,} users, {n_items:,} items")
    print(
        f"{'conc':>4} {'endpoint':<13} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}"
    )
    for r in rows:
        print(f"{r['concurrency']:>4} {r['endpoint']:<13} {r['requests']:>8} {r['per_second']:>7.0f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['errors']:>6}")  # fmt: skip
    change = (rss_after - rss_warm) / rss_warm
    print(f"server RSS: {rss_warm:.0f} MB after warm-up, {rss_after:.0f} MB after the run ({change:+.1%})")
    target = next(r for r in rows if r["concurrency"] == levels[0] and r["endpoint"] == "user-top10")
    errors = sum(r["errors"] for r in rows if r["endpoint"] == "all")
    met = target["p99_ms"] <= 50 and errors == 0 and abs(change) <= 0.10
    print(
        f"target (p99 <= 50 ms known-user top-10 at {levels[0]}, 0 errors, RSS within 10%): {'met' if met else 'NOT met'}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "run": str(args.run),
        "model": name,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
        "rss_mb": {"after_warmup": rss_warm, "after_run": rss_after},
        "target_met": met,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
