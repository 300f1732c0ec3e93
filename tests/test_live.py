"""A server that learns: retraining on a schedule, the live run kept in the store and swapped
in between requests, rollback, online metrics (``GET /metrics``) and the dashboard."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.feedback import Event, FeedbackStore
from neucf.retraining import Policy, Retrainer, prune
from neucf.serving import RecommendationService, create_app
from neucf.serving.live import LiveService
from test_serving import free_port, wait_for


@pytest.fixture(scope="module")
def run(rated) -> Path:
    """A small NeuMF rating run (conftest's)."""
    return rated[0]


def _events(users=6, items=5, rating=4.0, at=1000.0) -> list[Event]:
    return [Event(f"u{u}", str(i), rating, at + u * items + i) for u in range(users) for i in range(1, items + 1)]


def _metric(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_server_retrains_after_n_events_and_swaps_runs_with_no_request_failing(run, tmp_path, backend):
    from test_feedback import fresh_postgres

    store = str(tmp_path / "feedback.db") if backend == "sqlite" else fresh_postgres()
    live = LiveService(RecommendationService.from_run(run, store=store),
                       Policy(tmp_path / "runs", after=20), poll=0.2)  # fmt: skip
    live.adopt()
    with TestClient(create_app(live)) as client:
        first = client.get("/model").json()
        assert first["run"] == str(run.resolve()) and first["trained_at"]
        events = [{"user": e.user, "item": e.item, "rating": e.rating, "timestamp": e.timestamp} for e in _events()]
        assert client.post("/feedback", json={"events": events}).json() == {"stored": 30}
        statuses, deadline = [], time.monotonic() + 120
        while client.get("/model").json()["run"] == first["run"]:
            assert time.monotonic() < deadline, "no swap within 2 minutes"
            statuses.append(client.get("/users/u1/recommendations").status_code)
            statuses.append(client.get("/users/1/recommendations").status_code)
        assert set(statuses) == {200} and len(statuses) > 2
        swapped = client.get("/model").json()
        assert Path(swapped["run"]).parent == (tmp_path / "runs").resolve() and swapped["trained_at"]
        assert client.get("/users/u1/recommendations").status_code == 200
        runs = FeedbackStore(store).runs()
        assert [r.status for r in runs] == ["live", "live"] and runs[1].path == swapped["run"]
        assert runs[1].scores["held_out"] == 6 and "RMSE" in runs[1].scores["judged"]
        text = client.get("/metrics").text
        assert f'run="{swapped["run"]}"' in _metric(text, "neucf_live_run_info")[0]
        served = _metric(text, "neucf_lists_served_total")[0]
        assert float(served.split()[-1]) == len(statuses) + 1
        route = 'route="/users/{user}/recommendations",status="200"'
        assert any(route in line for line in _metric(text, "neucf_requests_total"))
        assert _metric(text, "neucf_feedback_events_total")[0].endswith(" 30.0")
    # a restarted server (or another one on the same store) serves the live run
    again = LiveService(RecommendationService.from_run(run, store=store), Policy(tmp_path / "runs"))
    again.adopt()
    assert again.service.run == swapped["run"]


def test_a_listed_item_rated_highly_later_is_a_hit(run, tmp_path):
    service = RecommendationService.from_run(run, store=str(tmp_path / "feedback.db"))
    client = TestClient(create_app(service))
    listed = [x["item"] for x in client.get("/users/1/recommendations", params={"k": 3}).json()["items"]]
    client.get("/users/2/recommendations", params={"k": 3})
    rate = lambda text: float(_metric(text, "neucf_online_hit_rate")[0].split()[-1])
    client.post("/feedback", json={"events": [{"user": "1", "item": listed[0], "rating": 2.0}]})
    assert rate(client.get("/metrics").text) == 0.0  # below the relevance threshold (4 on 1..5)
    client.post("/feedback", json={"events": [{"user": "1", "item": listed[1], "rating": 5.0}]})
    assert rate(client.get("/metrics").text) == 0.5
    assert service.store.hit_rate(0) == (2, 1)


def test_a_failing_retraining_leaves_the_live_run_and_says_why_in_one_line(run, tmp_path, caplog):
    store = FeedbackStore(tmp_path / "feedback.db")
    store.make_live(str(tmp_path / "gone"), 0.0)  # a live run whose folder was lost
    store.add(_events(users=2))
    retrainer = Retrainer(store, Policy(tmp_path / "runs", after=5))
    with caplog.at_level(logging.WARNING, logger="neucf.retraining.loop"):
        record = retrainer.step()
    assert record.status == "failed" and "gone" in record.scores["error"]
    assert store.live_run().path == str(tmp_path / "gone")
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert not list((tmp_path / "runs").glob("run-*"))
    assert retrainer.step() is None  # not due again until more events come
    store.add([Event("late", "1", 3.0, 1.0) for _ in range(1)] + _events(users=1, at=5000))
    assert retrainer.step().status == "failed"  # the next due one tries again


def test_one_holder_has_the_retraining_lock_until_it_runs_out(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    assert store.take_lock("retrain", "a", 60) and not store.take_lock("retrain", "b", 60)
    assert store.take_lock("retrain", "a", 0.05)  # renewed, shorter
    time.sleep(0.1)
    assert store.take_lock("retrain", "b", 60)  # a's lease ran out (it died)
    store.release_lock("retrain", "a")  # not a's any more: nothing happens
    assert not store.take_lock("retrain", "a", 60)


def test_prune_keeps_the_newest_runs_and_the_live_one(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    runs = tmp_path / "runs"
    for n in range(5):
        (runs / f"run-2026120{n}").mkdir(parents=True)
        (runs / f"run-2026120{n}" / "config.json").write_text("{}")
    store.make_live(str(runs / "run-20261200"), 0.0)
    gone = prune(store, Policy(runs, keep=2))
    assert sorted(p.name for p in gone) == ["run-20261201", "run-20261202"]
    assert sorted(p.name for p in runs.iterdir()) == ["run-20261200", "run-20261203", "run-20261204"]


def test_rollback_makes_a_kept_run_live_and_refuses_one_trained_before_an_erasure(run, tmp_path, capsys):
    store = tmp_path / "feedback.db"
    FeedbackStore(store).make_live(str(tmp_path / "other"), time.time())
    assert main(["rollback", str(run), "--store", str(store)]) == 0
    assert f"{run.resolve()} is the live run" in capsys.readouterr().out
    assert FeedbackStore(store).live_run().path == str(run.resolve())
    FeedbackStore(store).erase("someone")
    assert main(["rollback", str(run), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "before the store's newest erasure" in err
    assert main(["rollback", str(tmp_path), "--store", str(store)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_serve_refuses_retraining_without_its_folder_or_store_in_one_line(run, tmp_path, capsys):
    for args, says in [
        (["--store", str(tmp_path / "f.db"), "--retrain-every", "1h"], "--runs-dir"),
        (["--runs-dir", str(tmp_path / "runs")], "--store"),
        (["--store", str(tmp_path / "f.db"), "--runs-dir", str(tmp_path / "r"), "--retrain-every", "soon"],
         "not a duration"),
    ]:  # fmt: skip
        assert main(["serve", str(run), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err


def test_two_workers_add_up_their_metrics(run, tmp_path):
    port = free_port()
    args = [sys.executable, "-m", "neucf", "serve", str(run), "--port", str(port), "--workers", "2",
            "--store", str(tmp_path / "feedback.db"), "--runs-dir", str(tmp_path / "runs"), "--no-access-log"]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health")
        for n in range(20):
            wait_for(f"{base}/users/{n % 5 + 1}/recommendations")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert _metric(text, "neucf_lists_served_total")[0].split()[-1] == "20.0"
        assert wait_for(f"{base}/model")["run"] == str(run.resolve())
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.communicate(timeout=30)
    assert FeedbackStore(tmp_path / "feedback.db").hit_rate(0) == (20, 0)  # every list written at shutdown


def test_the_dashboard_draws_its_figures_in_chromium(run, tmp_path):
    from conftest import page_of

    service = RecommendationService.from_run(run, store=str(tmp_path / "feedback.db"))
    client = TestClient(create_app(service, api_key="k"))
    headers = {"Authorization": "Bearer k"}
    for user in ("1", "2", "3"):
        client.get(f"/users/{user}/recommendations", headers=headers)
    events = [{"user": e.user, "item": e.item, "rating": e.rating} for e in _events(users=2)]
    client.post("/feedback", json={"events": events}, headers=headers)
    assert client.get("/dashboard/data").status_code == 401
    with page_of(create_app(service, api_key="k")) as (page, base):
        page.goto(base + "/dashboard")
        page.fill("#api-key", "k")
        page.click("#key-form button")
        page.wait_for_function("document.body.dataset.loaded === 'true'")
        assert page.locator(".figures figure svg").count() == 4
        assert "10 events stored, 3 lists served" in page.text_content("#summary")
        assert str(run.resolve()) in page.text_content("#live-line")


def test_the_docker_compose_file_starts_postgres_and_neucf(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker here: the compose file is tested where Docker runs")
    folder = Path(__file__).parents[1] / "deploy"
    write_ratings(tmp_path / "ratings.csv", synthetic_ratings(n_users=50, n_items=30, density=0.35))
    env = {**os.environ, "NEUCF_DATA_DIR": str(tmp_path), "NEUCF_TRAIN": "--model biases"}
    up = subprocess.run([docker, "compose", "up", "--build", "-d", "--wait"], cwd=folder, env=env, capture_output=True)
    try:
        assert up.returncode == 0, up.stderr.decode()[-2000:]
        assert wait_for("http://127.0.0.1:8000/health", seconds=120)["status"] == "ok"
        model = json.loads(urllib.request.urlopen("http://127.0.0.1:8000/model").read())
        assert model["feedback"] is True and model["run"] == "/runs/first"
    finally:
        subprocess.run([docker, "compose", "down", "-v"], cwd=folder, env=env, capture_output=True)
