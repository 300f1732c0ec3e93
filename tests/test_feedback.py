"""The feedback store (SQLite everywhere, PostgreSQL where ``NEUCF_POSTGRES`` names a server:
``.ci/run`` starts one) and the server that keeps feedback: endpoints, erasure, new items,
failures answered 503, nothing acknowledged lost (kill -9), workers posting at once."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from conftest import synthetic_ratings
from neucf.cli import main
from neucf.feedback import Event, FeedbackStore, StoreUnavailable, without_erased
from neucf.feedback.store import _meta
from neucf.lists import recommend_history
from neucf.runs import fit_and_score, write_run
from neucf.serving import RecommendationService, create_app
from neucf.splits import Split
from test_serving import free_port, wait_for

POSTGRES = os.environ.get("NEUCF_POSTGRES")


def fresh_postgres() -> str:
    """The test server's database, emptied of the store's tables."""
    if not POSTGRES:
        pytest.skip("no PostgreSQL: set NEUCF_POSTGRES to a server's URL (.ci/run starts one)")
    engine = sa.create_engine(FeedbackStore(POSTGRES).url)
    _meta.drop_all(engine)
    engine.dispose()
    return POSTGRES


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    return str(tmp_path / "feedback.db") if request.param == "sqlite" else fresh_postgres()


# ---- the store --------------------------------------------------------------------------------
def test_a_later_event_replaces_an_earlier_one_and_an_id_stores_once(url):
    store = FeedbackStore(url)
    assert store.add([Event("u", "a", 3.0, 10.0, "e1"), Event("u", "b", None, 11.0), Event("u", "a", 5.0, 12.0)]) == 3
    assert store.add([Event("u", "a", 1.0, 5.0), Event("u", "c", 2.0, 13.0, "e1")]) == 1  # older; id seen
    assert [(e.item, e.rating, e.timestamp) for e in store.events_of("u")] == [("b", None, 11.0), ("a", 5.0, 12.0)]
    assert store.add([Event("v", "a", 4.0, 1.0, "e2"), Event("v", "b", 4.0, 1.0, "e2")]) == 1  # one id twice
    assert store.count() == 3
    store.close()


def test_erasure_deletes_the_events_and_is_remembered(url):
    store = FeedbackStore(url)
    store.add([Event("u", "a", 3.0, 1.0), Event("w", "a", 3.0, 1.0)])
    store.erase("u")
    store.erase("never-seen")
    assert store.history("u")[:2] == ([], True) and store.history("w").erased is False
    assert store.erased_users() == {"u", "never-seen"}
    store.add([Event("u", "b", 4.0, 2.0)])  # the id again: kept, a new person
    assert [e.item for e in FeedbackStore(url).events_of("u")] == ["b"]


def test_items_are_read_since_a_change_number(url):
    store = FeedbackStore(url)
    store.put_item("a", "A", {"genres": ["Comedy"]})
    store.put_item("b", None, {})
    first = store.items_since(0)
    store.put_item("a", "A, again", {"year": 2026})
    news = store.items_since(first[-1].seq)
    assert [x.item for x in first] == ["a", "b"] and [(x.item, x.title, x.attributes) for x in news] == [
        ("a", "A, again", {"year": 2026})
    ]
    assert store.last_item_change() == news[-1].seq


def test_served_lists_hits_runs_and_the_lock_in_both_databases(url):
    from neucf.feedback.store import ServedList

    store, now = FeedbackStore(url), time.time()
    store.record_lists([ServedList("u", ("a", "b"), now - 10, 0.01, "r1"), ServedList("v", ("a",), now - 5, 0.02)])
    store.add([Event("u", "b", 5.0, 1.0), Event("v", "c", 5.0, 1.0), Event("v", "a", 2.0, 1.0)], [True, True, False])
    assert store.hit_rate(0) == (2, 1) and store.hit_rate(now + 1) == (0, 0)
    activity = store.activity(now - 3600)
    assert sum(x["lists"] for x in activity["lists"]) == 2 and activity["events"][0]["events"] == 3
    assert store.events_since(0) == 3 and store.events_since(store.last_batch()) == 0
    assert store.take_lock("retrain", "a", 60) and not store.take_lock("retrain", "b", 60)
    store.release_lock("retrain", "a")
    assert store.take_lock("retrain", "b", 60)
    seq = store.start_run("/runs/2", store.last_batch())
    store.make_live("/runs/1", now - 100)
    assert store.live_run().path == "/runs/1"
    store.finish_run(seq, "live", {"judged": "ok"}, now)
    assert store.live_run().path == "/runs/2" and [r.status for r in store.runs()] == ["live", "live"]


def _post_batches(url: str, worker: int, batches: int, size: int) -> None:
    store = FeedbackStore(url)
    for b in range(batches):
        store.add([Event(f"w{worker}-{b}", str(i), 4.0, time.time()) for i in range(size)])
    store.close()


def test_threads_and_processes_posting_at_once_lose_nothing(url):
    FeedbackStore(url).close()  # tables made once, as a server does before its workers
    threads = [threading.Thread(target=_post_batches, args=(url, n, 20, 50)) for n in range(3)]
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_post_batches, args=(url, n, 20, 50)) for n in range(3, 5)]
    for t in threads + processes:
        t.start()
    for t in threads + processes:
        t.join(120)
    assert all(p.exitcode == 0 for p in processes)
    assert FeedbackStore(url).count() == 5 * 20 * 50


def test_a_full_sqlite_database_fails_in_one_line_stores_nothing_and_recovers(tmp_path):
    store = FeedbackStore(tmp_path / "feedback.db")
    store.add([Event("u", "a", 3.0, 1.0)])

    def full(connection, _record):  # SQLite's own "database or disk is full", at its page cap
        connection.execute("PRAGMA max_page_count = 1")

    store._write.dispose()
    sa.event.listen(store._write, "connect", full)
    with pytest.raises(StoreUnavailable) as failed:
        store.add([Event(f"u{n}", "a" * 200, 3.0, 1.0) for n in range(500)])
    assert "database or disk is full" in str(failed.value) and "\n" not in str(failed.value)
    sa.event.remove(store._write, "connect", full)
    store._write.dispose()
    assert store.count() == 1
    assert store.add([Event("v", "a", 3.0, 1.0)]) == 1 and store.count() == 2


def test_postgres_connections_dropped_under_the_store_are_made_again():
    store = FeedbackStore(fresh_postgres())
    store.add([Event("u", "a", 3.0, 1.0)])
    with sa.create_engine(store.url, isolation_level="AUTOCOMMIT").connect() as admin:
        killed = admin.scalar(sa.text(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid()"
        ))  # fmt: skip
    assert killed >= 1
    assert store.add([Event("u", "b", 3.0, 2.0)]) == 1 and len(store.events_of("u")) == 2


def test_an_unreachable_postgres_is_one_line():
    with pytest.raises(StoreUnavailable) as failed:
        FeedbackStore("postgresql://neucf@127.0.0.1:9/neucf?connect_timeout=2")
    assert "could not make its tables" in str(failed.value) and "\n" not in str(failed.value)


def test_a_store_url_is_checked_before_any_work(tmp_path):
    from neucf.errors import UsageError
    from neucf.feedback import store_url

    assert store_url(str(tmp_path / "f.db")) == f"sqlite:///{tmp_path / 'f.db'}"
    with pytest.raises(UsageError, match="no such writable folder"):
        store_url(str(tmp_path / "missing" / "f.db"))
    with pytest.raises(UsageError, match="SQLite file or a PostgreSQL database"):
        store_url("mysql://db/neucf")


# ---- the service ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small NeuMF rating run."""
    data = synthetic_ratings(n_users=60, n_items=40, density=0.3)
    model, metrics = fit_and_score("neumf", data, None, data, factors=4, layers=2, epochs=2, ranking=False)
    return write_run(tmp_path_factory.mktemp("feedback") / "run", model, metrics, {"model": "neumf"})


@pytest.fixture
def keeping(run_dir, tmp_path):
    """A service of the run keeping feedback in a fresh SQLite file, and its client."""
    service = RecommendationService.from_run(run_dir, store=str(tmp_path / "feedback.db"))
    return service, TestClient(create_app(service, api_key="k", admin_key="admin"))


KEY, ADMIN = {"Authorization": "Bearer k"}, {"Authorization": "Bearer admin"}


def listed(client, user: str, **query) -> list[str]:
    response = client.get(f"/users/{user}/recommendations", params={"k": 5, **query}, headers=KEY)
    assert response.status_code == 200, response.text
    return [x["item"] for x in response.json()["items"]]


def test_a_user_known_only_to_the_store_gets_a_folded_in_list_at_once(keeping):
    service, client = keeping
    model, items = service.model, list(service._items)
    assert client.get("/users/visitor/recommendations", headers=KEY).status_code == 404
    events = [{"user": "visitor", "item": items[n], "rating": float(1 + n % 5)} for n in range(6)]
    assert client.post("/feedback", json={"events": events}, headers=KEY).json() == {"stored": 6}
    index = np.array([service._items[e["item"]] for e in events])
    want, _ = recommend_history(model, None, index, np.array([e["rating"] for e in events]), k=5)
    assert listed(client, "visitor") == [service._item_keys[i] for i in want]
    assert not set(listed(client, "visitor", k=30)) & {e["item"] for e in events}
    assert set(listed(client, "visitor", k=40, exclude_seen=False)) & {e["item"] for e in events}
    first = listed(client, "visitor")[0]
    client.post("/feedback", json={"events": [{"user": "visitor", "item": first, "rating": 1.0}]}, headers=KEY)
    assert first not in listed(client, "visitor", k=30)  # the next request already knows
    stored = client.get("/users/visitor/feedback", headers=KEY).json()
    assert [e["item"] for e in stored["events"]] == [e["item"] for e in events] + [first]


def test_a_trained_users_feedback_is_merged_with_their_history(keeping):
    service, client = keeping
    user = next(iter(service._users))
    u = service._users[user]
    new = [key for key, i in service._items.items() if i not in set(service.model._rated_by(u))][:3]
    client.post("/feedback", json={"events": [{"user": user, "item": x, "rating": 5.0} for x in new]}, headers=KEY)
    want = service.model.recommend(user, k=5, history={x: 5.0 for x in new})["item"]
    assert listed(client, user) == [str(x) for x in want]
    asked = [x for x in service._items if x not in new][:4]
    answer = client.post("/predictions", json={"user": user, "items": asked}, headers=KEY).json()
    stored = pd.DataFrame({"user": user, "item": new, "rating": 5.0})
    folded = service.model.predict([service.model.user_ids[service._users[user]]] * 4, asked, history=stored)
    assert [p["prediction"] for p in answer["predictions"]] == pytest.approx(list(folded), abs=1e-5)
    trained_only = service.model.predict([service.model.user_ids[service._users[user]]] * 4, asked)
    assert not np.allclose(folded, trained_only, atol=1e-4)  # the stored events did count


def test_a_bad_event_stores_nothing(keeping):
    service, client = keeping
    events = [{"user": "a", "item": "1", "rating": 4.0}, {"user": "a", "item": "2", "rating": 9.0}]
    response = client.post("/feedback", json={"events": events}, headers=KEY)
    assert response.status_code == 422 and "event 1" in response.text and "outside the scale" in response.text
    missing = client.post("/feedback", json={"events": [{"user": "a", "item": "1"}]}, headers=KEY)
    assert missing.status_code == 422 and "needs a rating" in missing.text
    too_many = client.post("/feedback", json={"events": [{"user": "a", "item": "1", "rating": 4.0}] * 10_001},
                           headers=KEY)  # fmt: skip
    assert too_many.status_code in (413, 422)
    assert service.store.count() == 0


def test_erasure_forgets_the_user_at_once_and_a_new_post_starts_afresh(keeping):
    service, client = keeping
    user = next(iter(service._users))
    item = next(iter(service._items))
    client.post("/feedback", json={"events": [{"user": user, "item": item, "rating": 2.0}]}, headers=KEY)
    assert client.delete(f"/users/{user}", headers=KEY).status_code == 401  # the admin key, instead
    assert client.delete(f"/users/{user}", headers=ADMIN).status_code == 204
    assert client.delete("/users/never-seen", headers=ADMIN).status_code == 204
    gone = client.get(f"/users/{user}/recommendations", headers=KEY)
    assert gone.status_code == 404 and "erased" in gone.json()["detail"]
    assert client.get(f"/users/{user}/feedback", headers=KEY).status_code == 404
    asked = client.post("/predictions", json={"user": user, "items": [item]}, headers=KEY)
    assert asked.status_code == 404
    client.post("/feedback", json={"events": [{"user": user, "item": item, "rating": 5.0}]}, headers=KEY)
    want, _ = recommend_history(service.model, None, np.array([service._items[item]]), np.array([5.0]), k=5)
    assert listed(client, user) == [service._item_keys[i] for i in want]  # their training row is not used


def test_a_put_item_is_found_at_once_and_needs_the_admin_key(keeping):
    service, client = keeping
    body = {"title": "A Brand New Film", "attributes": {"genres": ["Comedy"], "year": 2026}}
    assert client.put("/items/fresh", json=body, headers=KEY).status_code == 401
    assert client.put("/items/fresh", json=body, headers=ADMIN).status_code == 200
    found = client.get("/items", params={"q": "brand new"}, headers=KEY).json()["items"]
    assert found == [{"item": "fresh", "title": "A Brand New Film"}]
    # another worker's service on the same store sees it too
    other = RecommendationService(service.model, store=FeedbackStore(service.store.url))
    assert other.search("brand new") == found


def test_an_items_first_interactions_list_it_at_once_in_every_server(keeping, run_dir):
    from neucf.runs import read_run

    service, client = keeping
    other = RecommendationService(read_run(run_dir), store=FeedbackStore(service.store.url))  # another worker
    raters, asker = list(service._users)[:4], list(service._users)[10]
    ask = {"user": asker, "items": ["premiere"]}
    assert client.post("/predictions", json=ask, headers=KEY).status_code == 404
    events = [{"user": u, "item": "premiere", "rating": 5.0} for u in raters] + [
        {"user": "visitor", "item": "premiere", "rating": 1.0}  # a user the run never saw: not in the column
    ]
    assert client.post("/feedback", json={"events": events}, headers=KEY).json() == {"stored": 5}
    answer = client.post("/predictions", json=ask, headers=KEY)
    assert answer.status_code == 200  # this worker, at once
    fresh = read_run(run_dir)
    fresh.add_items(interactions=pd.DataFrame({"user": raters, "item": "premiere", "rating": 5.0}))
    want = float(fresh.predict([fresh.user_ids[service._users[asker]]], ["premiere"])[0])
    assert answer.json()["predictions"][0]["prediction"] == pytest.approx(want, abs=1e-5)
    assert "premiere" in listed(client, asker, k=len(service._items))
    assert "premiere" not in listed(client, raters[0], k=len(service._items))  # they gave it feedback
    assert [x.item for x in other.recommend_user(asker, k=len(service._items))].count("premiere") == 1  # next read
    for u in raters:  # erasure takes their events out of its column: nothing is left to fold
        assert client.delete(f"/users/{u}", headers=ADMIN).status_code == 204
    assert client.post("/predictions", json=ask, headers=KEY).status_code == 404
    assert "premiere" not in [x.item for x in other.recommend_user(asker, k=len(service._items) + 1)]


def test_a_ranking_run_of_interactions_lists_an_item_from_its_first_ones(tmp_path):
    from neucf.datasets import Ratings
    from neucf.models import make_model
    from test_cold_start import taste_data

    taste = taste_data(picky=True)
    plays = Ratings.from_arrays(taste.user_ids[taste.users], taste.item_ids[taste.items], implicit=True)
    model = make_model("hybrid", task="ranking", seed=0).fit(plays)  # on interactions: EASE
    service = RecommendationService(model, store=FeedbackStore(tmp_path / "feedback.db"))
    client = TestClient(create_app(service))
    everything = {"k": len(service._items) + 1}
    assert "premiere" not in listed(client, "1", **everything)
    # the users who had most of what user 1 had take the new item: it suits user 1 more than
    # the user who shares least with them
    peers = [str(u) for u in model.user_ids[model.known_users] if str(u) != "1"]
    shared = [len(set(model._rated_by(service._users[u])) & set(model._rated_by(service._users["1"]))) for u in peers]
    order = np.argsort(shared)[::-1]
    takers, far = [peers[n] for n in order[:8]], peers[order[-1]]
    events = [{"user": u, "item": "premiere"} for u in takers]
    assert client.post("/feedback", json={"events": events}).json() == {"stored": 8}
    assert "premiere" in listed(client, "1", **everything)
    assert "premiere" not in listed(client, takers[0], **everything)
    score = {u: client.post("/predictions", json={"user": u, "items": ["premiere"]}).json()["predictions"][0]
             for u in ("1", far)}  # fmt: skip
    assert score["1"]["prediction"] > score[far]["prediction"]
    assert client.get("/model").json()["items"] == len(service._items)


def test_a_model_reading_item_attributes_lists_a_put_item(tmp_path):
    from neucf.models import make_model
    from test_cold_start import taste_data

    model = make_model("ease", task="ranking", l2=10.0).fit(taste_data(picky=True))
    service = RecommendationService(model, store=FeedbackStore(tmp_path / "feedback.db"))
    client = TestClient(create_app(service))
    body = {"title": "New comedy", "attributes": {"genres": ["Comedy", "Film"], "year": 2026, "colour": "red"}}
    assert client.put("/items/new-comedy", json=body).status_code == 200
    asked = client.post("/recommendations", json={"ratings": [{"item": "1"}], "k": 1, "candidates": ["new-comedy"]})
    assert [x["item"] for x in asked.json()["items"]] == ["new-comedy"]
    assert client.get("/items", params={"newest": True}).json()["items"][0]["item"] == "new-comedy"


def test_a_failing_database_is_503_in_one_line(keeping):
    service, client = keeping

    def full(connection, _record):
        connection.execute("PRAGMA max_page_count = 1")

    service.store._write.dispose()
    sa.event.listen(service.store._write, "connect", full)
    events = [{"user": f"u{n}", "item": "x" * 200, "rating": 3.0} for n in range(300)]
    response = client.post("/feedback", json={"events": events}, headers=KEY)
    assert response.status_code == 503 and "database or disk is full" in response.json()["detail"]
    sa.event.remove(service.store._write, "connect", full)
    service.store._write.dispose()
    assert client.post("/feedback", json={"events": events[:1]}, headers=KEY).json() == {"stored": 1}


def test_schema_fuzzing_of_the_feedback_endpoints_finds_no_server_error(keeping):
    from test_serving import fuzzed

    service, _ = keeping
    count, failures = fuzzed(create_app(service), tags={"feedback"})
    assert count == 3  # POST /feedback, GET /users/{user}/feedback, DELETE /users/{user}
    assert not failures, "\n".join(failures)
    count, failures = fuzzed(create_app(service), tags={"items"})
    assert count == 2 and not failures, "\n".join(failures)  # GET /items, PUT /items/{item}
    count, failures = fuzzed(create_app(service), tags={"service"})
    assert count == 4 and not failures, "\n".join(failures)  # /health, /model, /metrics, /dashboard/data


def test_a_server_without_a_store_keeps_nothing(run_dir):
    client = TestClient(create_app(RecommendationService.from_run(run_dir)))
    assert client.post("/feedback", json={"events": []}).status_code == 404
    assert client.get("/model").json()["feedback"] is False


# ---- training and the command line --------------------------------------------------------------
def test_training_leaves_out_every_erased_users_rows(tmp_path, capsys):
    data = synthetic_ratings(n_users=30, n_items=20)
    parts = Split(np.arange(len(data)), np.zeros(0, int), np.zeros(0, int))
    kept = without_erased(data, parts, {"1", "2"})
    assert len(kept.train) == len(data) - np.isin(data.user_ids[data.users], [1, 2]).sum()
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(
        f"{data.user_ids[u]},{data.item_ids[i]},{r}\n" for u, i, r in zip(data.users, data.items, data.ratings)
    ))  # fmt: skip
    store = FeedbackStore(tmp_path / "feedback.db")
    store.erase("1")
    code = main(["train", "--data", str(path), "--model", "bias", "--out", str(tmp_path / "run"), "--store",
                 str(tmp_path / "feedback.db")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    sizes = json.loads((tmp_path / "run" / "config.json").read_text())["sizes"]
    assert sum(sizes.values()) == len(data) - (data.user_ids[data.users] == 1).sum()
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r2"), "--store", str(tmp_path / "no.db")]) == 2
    assert "no such feedback store" in capsys.readouterr().err


def test_serve_refuses_a_store_inside_the_run(run_dir, capsys):
    assert main(["serve", str(run_dir), "--store", str(run_dir / "feedback.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside the neucf run folder" in err


def _post(base: str, events: list[dict]) -> dict:
    request = urllib.request.Request(f"{base}/feedback", data=json.dumps({"events": events}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _start(run_dir, store: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "neucf", "serve", str(run_dir), "--port", str(port), "--store", store,
            "--workers", str(workers), "--no-access-log"]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/health")
    return server, base


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_lose_nothing_and_kill_9_loses_nothing_acknowledged(run_dir, tmp_path, backend):
    store = str(tmp_path / "feedback.db") if backend == "sqlite" else fresh_postgres()
    server, base = _start(run_dir, store, workers=2)
    try:

        def client(n):
            for b in range(10):
                _post(base, [{"user": f"c{n}-{b}", "item": str(i), "rating": 4.0} for i in range(50)])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert _post(base, [{"user": "last", "item": "1", "rating": 5.0, "id": "final"}]) == {"stored": 1}
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # right after the 200: no shutdown, no flush
        server.wait(30)
    assert FeedbackStore(store).count() == 6 * 10 * 50 + 1
    server, base = _start(run_dir, store, workers=1)
    try:
        assert wait_for(f"{base}/users/last/feedback")["events"][0]["rating"] == 5.0
        assert _post(base, [{"user": "last", "item": "1", "rating": 5.0, "id": "final"}]) == {"stored": 0}
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


# ---- the page, in a real browser --------------------------------------------------------------
def test_the_page_stores_its_visitors_stars_and_forgets_them_in_chromium(run_dir, tmp_path):
    from conftest import page_of

    service = RecommendationService.from_run(run_dir, store=str(tmp_path / "feedback.db"))
    with page_of(create_app(service)) as (page, base):
        page.goto(base + "/")
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('Popular')")
        assert page.locator("#recommendations li").count() == 10
        for n in range(2):
            page.locator("#results li").nth(n).locator(".stars button").nth(4 - n).click()
            page.wait_for_function(
                f"document.getElementById('recommendations-title').textContent.includes('{n + 1} rating')"
            )
        visitor = page.evaluate("localStorage.getItem('neucf-visitor')")
        assert visitor.startswith("visitor-") and visitor not in service._users
        assert sorted(e.rating for e in service.store.events_of(visitor)) == [4.0, 5.0]
        page.reload()  # the stars were stored, not kept in the page
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('2 ratings')")
        assert page.locator("#rated li:not(.empty)").count() == 2
        page.click("#forget-me")
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('Popular')")
        assert service.store.history(visitor)[:2] == ([], True)
        assert page.evaluate("localStorage.getItem('neucf-visitor')") != visitor


def test_a_postgres_that_stops_is_503_and_the_server_recovers_when_it_returns(run_dir):
    """A server of its own (Debian's PostgreSQL binaries), stopped and started under a service."""
    import glob
    import shutil
    import tempfile
    from pathlib import Path

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.skip("no PostgreSQL binaries: install Debian's postgresql package (.ci/run does)")
    bin_dir = os.path.dirname(found[-1])
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="neucf-pg-"))  # outside pytest's folders, which only root may enter
    if as_pg:
        shutil.chown(folder, "postgres")

    def pg(*args):
        subprocess.run([*as_pg, *args], check=True, capture_output=True, timeout=60)

    pg(f"{bin_dir}/initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "neucf")
    ctl = [f"{bin_dir}/pg_ctl", "-D", str(folder / "data"), "-o", f"-k {folder} -c listen_addresses=''", "-w"]
    pg(*ctl, "-l", str(folder / "log"), "start")
    try:
        service = RecommendationService.from_run(run_dir, store=f"postgresql://neucf@/postgres?host={folder}")
        client = TestClient(create_app(service))
        event = {"events": [{"user": "u", "item": "x", "rating": 4.0}]}
        assert client.post("/feedback", json=event).json() == {"stored": 1}
        pg(*ctl, "-m", "fast", "stop")
        down = client.post("/feedback", json=event)
        assert down.status_code == 503 and "\n" not in down.json()["detail"], down.text
        assert client.get("/users/u/recommendations").status_code == 503
        pg(*ctl, "-l", str(folder / "log"), "start")
        assert client.post("/feedback", json={"events": [{"user": "u", "item": "y", "rating": 2.0}]}).json() == {
            "stored": 1
        }
        assert [e.item for e in service.store.events_of("u")] == ["x", "y"]
    finally:
        subprocess.run([*as_pg, *ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
