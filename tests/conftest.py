import contextlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neucf.cli import main
from neucf.datasets import Ratings

ML100K = os.environ.get("NEUCF_ML100K")

# the example plugin registers a model when imported: only the tests that ask for it import it
collect_ignore = ["plugins"]


@pytest.fixture
def plugin_model():
    """The example plugin model (tests/plugins), registered for one test and removed after."""
    from neucf.models import registry
    from plugins.shrunk_item_mean import ShrunkItemMean

    registry.register("shrunk-item-mean")(ShrunkItemMean)
    yield ShrunkItemMean
    registry.unregister("shrunk-item-mean")


@pytest.fixture
def ml100k() -> Path:
    """The real MovieLens 100k folder, or a skip when NEUCF_ML100K is unset."""
    if not ML100K:
        pytest.skip("NEUCF_ML100K is unset: point it at the ml-100k folder to run this test")
    path = Path(ML100K)
    if not (path / "u.data").is_file():
        pytest.skip(f"NEUCF_ML100K={ML100K} holds no u.data")
    return path


def synthetic_ratings(n_users=60, n_items=40, density=0.3, seed=0, scale=(1, 5), low_rank=True) -> Ratings:
    """Ratings with a planted low-rank structure, every user and item rated >= 3 times."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    # make sure every user and item has at least three ratings
    for u in range(n_users):
        mask[u, rng.choice(n_items, 3, replace=False)] = True
    for i in range(n_items):
        mask[rng.choice(n_users, 3, replace=False), i] = True
    users, items = np.nonzero(mask)
    if low_rank:
        p, q = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
        raw = (p[users] * q[items]).sum(1) + rng.normal(scale=0.3, size=len(users))
        # standardised, then spread over the scale: a strong, learnable signal
        raw = np.clip(0.5 + 0.22 * (raw - raw.mean()) / raw.std(), 0, 1)
    else:
        raw = rng.random(len(users))
    values = np.round(scale[0] + raw * (scale[1] - scale[0]))
    order = rng.permutation(len(users))
    return Ratings.from_arrays(
        users[order] + 1, items[order] + 100, values[order], timestamps=rng.integers(0, 10**6, len(users)), scale=scale
    )


def write_ratings(path: Path, ratings: Ratings, sep=",", header=True) -> Path:
    frame = ratings.to_frame()
    frame.to_csv(path, sep=sep, header=header, index=False)
    return path


def rewrite_config(folder: Path, config: dict) -> None:
    """Write a run's config.json and record its SHA-256 in the run's marker, as the run itself
    would have: what is tested is then the deeper checks of what a run holds."""
    from neucf.files import MARKER, checksum

    (folder / "config.json").write_text(json.dumps(config))
    (folder / MARKER).write_text(f"run\nconfig.json {checksum(folder / 'config.json')}\n")


def run(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> bool:
    """Whether ``err`` ends with the one ``error: `` line, with no traceback."""
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    return len(lines) == 1 and err.strip().endswith(lines[0]) and "Traceback" not in err and "unexpected" not in err


@contextlib.contextmanager
def served(app):
    """``app`` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def chromium_path() -> str:
    """Debian's Chromium (or ``$NEUCF_CHROMIUM``); the test is skipped, with the reason, without it."""
    path = os.environ.get("NEUCF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run does) or set NEUCF_CHROMIUM")
    return path


@contextlib.contextmanager
def page_of(app):
    """A Chromium page (through Playwright) beside ``app`` served on a loopback port (:func:`served`):
    yields (page, base URL); skipped, with the reason, without Chromium or Playwright."""
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with served(app) as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            yield page, base
        finally:
            browser.close()


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A small NeuMF rating run (trained by ``neucf train``) and its ratings (test_retraining, test_live)."""
    folder = tmp_path_factory.mktemp("retrain")
    data = synthetic_ratings(n_users=50, n_items=30, density=0.35)
    path = write_ratings(folder / "ratings.csv", data)
    args = ["train", "--data", str(path), "--model", "neumf", "--factors", "4", "--layers", "2", "--epochs", "3",
            "--no-progress", "--no-ranking", "--out", str(folder / "run")]  # fmt: skip
    assert main(args) == 0
    return folder / "run", data
