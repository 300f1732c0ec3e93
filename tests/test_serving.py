"""``neucf serve``: the service, every endpoint and error through FastAPI's TestClient, the API
key, the body cap, the offline docs, schemathesis against the app's own schema, and the
command itself in a subprocess."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import chromium_path, served, synthetic_ratings
from neucf.cli import main
from neucf.datasets import Ratings
from neucf.runs import fit_and_score, read_run, write_run
from neucf.serving import RecommendationService, create_app
from neucf.serving.service import MAX_HISTORY, read_titles


def titled(ratings: Ratings) -> Ratings:
    titles = {int(i): f"Movie {int(i)} ({'Star' if i % 3 == 0 else 'Plain'})" for i in ratings.item_ids}
    return Ratings.from_arrays(
        ratings.user_ids[ratings.users], ratings.item_ids[ratings.items], ratings.ratings, item_titles=titles
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small NeuMF run folder with titles."""
    data = titled(synthetic_ratings(n_users=80, n_items=50, density=0.3))
    rng = np.random.default_rng(0)
    test = rng.random(len(data)) < 0.1
    train, holdout = data.subset(np.flatnonzero(~test)), data.subset(np.flatnonzero(test))
    model, metrics = fit_and_score("neumf", train, None, holdout, factors=4, layers=2, epochs=3, ranking=False)
    return write_run(tmp_path_factory.mktemp("serve") / "run", model, metrics, {"model": "neumf"}, test=holdout)


@pytest.fixture(scope="module")
def service(run_dir):
    return RecommendationService.from_run(run_dir)


@pytest.fixture(scope="module")
def client(service):
    return TestClient(create_app(service))


def known_user(service) -> str:
    return next(iter(service._users))


def unrated_items(service, user: str, n: int) -> list[str]:
    rated = set(service.model._rated_by(service._users[user]))
    return [key for key, i in service._items.items() if i not in rated][:n]


# ---- the service ----------------------------------------------------------------------------------
def test_service_answers_match_the_model(service):
    model, user = service.model, known_user(service)
    raw_user = model.user_ids[service._users[user]]
    top = service.recommend_user(user, k=5)
    expected = model.recommend(raw_user, k=5)
    assert [x.item for x in top] == [str(i) for i in expected["item"]]
    assert np.allclose([x.prediction for x in top], expected["prediction"])
    assert all(x.title.startswith("Movie ") for x in top)
    items = [x.item for x in top]
    assert np.allclose(service.predict(items, user=user)[0], [x.prediction for x in top], atol=1e-5)
    history = [(items[0], 5.0), (items[1], 1.0)]
    new, ignored, _ = service.predict(items[2:], ratings=history)
    assert ignored == []
    raw = {model.item_ids[service._items[i]]: r for i, r in history}
    assert np.allclose(new, model.predict_new_user(raw, model.item_ids[[service._items[i] for i in items[2:]]]))
    recommended, ignored, _ = service.recommend_new([*history, ("no-such-item", 3.0)], k=10)
    assert (
        len(recommended) == 10
        and ignored == ["no-such-item"]
        and not {items[0], items[1]} & {x.item for x in recommended}
    )
    library = model.recommend(None, k=10, history=raw)
    assert [x.item for x in recommended] == [str(i) for i in library["item"]]
    assert np.allclose([x.prediction for x in recommended], library["prediction"])


def test_a_run_is_ready_before_its_first_request(run_dir):
    # the lookups a first list would build, built by the service itself (at start, or off the
    # request path before a swap), and the same list after
    service = RecommendationService.from_run(run_dir)
    model = service.model
    assert model._by_user is not None and model._rows_by_user is not None
    user = known_user(service)
    listed = [x.item for x in service.recommend_user(user, 5)]
    assert listed == [str(x) for x in read_run(run_dir).recommend(int(user), k=5)["item"]]


def test_search_is_case_blind_and_most_rated_first(service):
    hits = service.search("star", limit=1000)
    assert hits and all("Star" in h["title"] for h in hits)
    counts = np.bincount(service.model.train_[1], minlength=len(service.model.item_ids))
    order = [counts[service._items[h["item"]]] for h in hits]
    assert order == sorted(order, reverse=True)
    assert len(service.search("", limit=7)) == 7
    assert service.search("no such title") == []


def test_titles_file_replaces_the_data_titles(run_dir, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item,title,year\n100,First,1990\n 101 ,Second,1991\n")
    assert read_titles(path) == {"100": "First", "101": "Second"}
    service = RecommendationService.from_run(run_dir, path)
    assert service.search("first") == [{"item": "100", "title": "First"}]
    assert service.search("102") == []  # items without a title are found by nothing
    (tmp_path / "bad.csv").write_text("id,name\n1,x\n")
    with pytest.raises(ValueError, match="needs the header item,title"):
        read_titles(tmp_path / "bad.csv")
    (tmp_path / "latin.csv").write_bytes("item,title\n7,Les Misérables\n".encode("latin-1"))
    (tmp_path / "utf8.csv").write_text("item,title\n7,Les Misérables\n8,千と千尋の神隠し\n", encoding="utf-8")
    assert read_titles(tmp_path / "latin.csv") == {"7": "Les Misérables"}
    assert read_titles(tmp_path / "utf8.csv") == {"7": "Les Misérables", "8": "千と千尋の神隠し"}


# ---- endpoints ------------------------------------------------------------------------------------
def test_health_and_model(client, service):
    assert client.get("/health").json() == {"status": "ok", "model": "neumf"}
    info = client.get("/model").json()
    assert info["model"] == "neumf" and info["config"]["factors"] == 4
    assert info["users"] == len(service._users) and info["items"] == len(service._items)
    assert info["scale"] == [1.0, 5.0] and info["metrics"]["rmse"] > 0


def test_known_user_recommendations(client, service):
    user = known_user(service)
    body = client.get(f"/users/{user}/recommendations", params={"k": 3}).json()
    assert body["user"] == user and len(body["items"]) == 3
    predictions = [x["prediction"] for x in body["items"]]
    assert predictions == sorted(predictions, reverse=True)
    rated = {service._item_keys[i] for i in service.model._rated_by(service._users[user])}
    everything = client.get(f"/users/{user}/recommendations", params={"k": 1000}).json()["items"]
    assert not rated & {x["item"] for x in everything}
    with_seen = client.get(f"/users/{user}/recommendations", params={"k": 1000, "exclude_seen": False}).json()
    assert rated <= {x["item"] for x in with_seen["items"]}


def test_predictions_in_the_order_asked(client, service):
    user = known_user(service)
    items = unrated_items(service, user, 4)[::-1]
    body = client.post("/predictions", json={"user": user, "items": items}).json()
    assert [x["item"] for x in body["predictions"]] == items
    new = client.post("/predictions", json={"ratings": [{"item": items[0], "rating": 5}], "items": items[1:]})
    assert new.status_code == 200 and len(new.json()["predictions"]) == 3


def test_new_user_recommendations_exclude_what_they_rated(client, service):
    items = unrated_items(service, known_user(service), 3)
    ratings = [{"item": i, "rating": r} for i, r in zip(items, (5, 4.5, 1))]
    body = client.post("/recommendations", json={"ratings": ratings, "k": 5}).json()
    assert "user" not in body and len(body["items"]) == 5
    assert not set(items) & {x["item"] for x in body["items"]}
    assert all(x["title"].startswith("Movie") for x in body["items"])
    empty = client.post("/recommendations", json={"ratings": []})
    assert empty.status_code == 200 and len(empty.json()["items"]) == 10


def test_items_search(client):
    body = client.get("/items", params={"q": "STAR", "limit": 2}).json()
    assert len(body["items"]) == 2 and all("Star" in x["title"] for x in body["items"])


# ---- errors ---------------------------------------------------------------------------------------
def detail(response) -> str:
    return json.dumps(response.json()["detail"])


def test_unknown_ids_are_404_naming_them(client, service):
    assert client.get("/users/nobody/recommendations").status_code == 404
    user = known_user(service)
    known_item = next(iter(service._items))
    response = client.post("/predictions", json={"user": user, "items": [known_item, "nonexistent-item"]})
    assert response.status_code == 404 and "nonexistent-item" in detail(response)
    # a history's unknown items are left out and listed: catalogues grow between trainings
    response = client.post("/recommendations", json={"ratings": [{"item": "ghost", "rating": 3}]})
    assert response.status_code == 200 and response.json()["ignored"] == ["ghost"]
    response = client.post("/predictions", json={"ratings": [{"item": "ghost", "rating": 3}], "items": [known_item]})
    assert response.status_code == 200 and response.json()["ignored"] == ["ghost"]
    response = client.post("/predictions", json={"user": "nobody", "items": [known_item]})
    assert response.status_code == 404 and "nobody" in detail(response)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/predictions", {"user": "1", "ratings": [], "items": ["1"]}),  # both
        ("/predictions", {"items": ["1"]}),  # neither
        ("/predictions", {"user": "1", "items": []}),
        ("/predictions", {"user": 1, "items": ["1"]}),  # wrong type
        ("/predictions", {"user": "1", "items": ["1"], "extra": 1}),
        ("/recommendations", {"ratings": [{"item": "100", "rating": "5"}]}),
        ("/recommendations", {"ratings": [{"item": 1, "rating": 5}]}),
        ("/recommendations", {"ratings": [{"item": "100", "rating": 9}]}),  # outside the scale
        ("/recommendations", {"ratings": [{"item": "100", "rating": 0.5}]}),
        ("/recommendations", {"ratings": [{"item": "100"}]}),  # a rating model needs the rating
        ("/recommendations", {"ratings": [], "k": 0}),
        ("/recommendations", {"ratings": [], "k": 1001}),
        ("/recommendations", {"ratings": [], "k": True}),
        ("/recommendations", {"k": 3}),
        ("/recommendations", [1, 2]),
    ],
)
def test_bad_bodies_are_422(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_malformed_json_and_bad_queries_are_422(client, service):
    assert (
        client.post("/predictions", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    user = known_user(service)
    for k in ("0", "1001", "x"):
        assert client.get(f"/users/{user}/recommendations", params={"k": k}).status_code == 422
    assert client.get("/items", params={"limit": 0}).status_code == 422


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_numbers_json_cannot_hold_are_422_never_500(client, service, number):
    item = next(iter(service._items))
    bodies = [
        ("/recommendations", f'{{"ratings": [], "k": {number}}}'),
        ("/recommendations", f'{{"ratings": [{{"item": "{item}", "rating": {number}}}], "k": 3}}'),
        ("/predictions", f'{{"ratings": [{{"item": "{item}", "rating": {number}}}], "items": ["{item}"]}}'),
    ]
    for path, body in bodies:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (body, response.text)
        detail = json.loads(response.text, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))["detail"]
        assert detail and all("finite" in d["msg"] or "number" in d["msg"] for d in detail), detail


def test_head_is_answered_on_every_get_route(client, service):
    user = known_user(service)
    for path in ("/health", "/model", f"/users/{user}/recommendations", "/items?q=a", "/", "/docs", "/static/app.js"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == got.headers["content-length"], path
    assert client.head("/predictions").status_code == 405  # a POST route stays one


def test_a_stalled_body_is_408(service):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(service, body_timeout=0.5), port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{")  # fmt: skip
            start = time.monotonic()
            answer = conn.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408") and "not received within 0.5 s" in answer, answer
        assert time.monotonic() - start < 5
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_history_over_the_limit_is_422(client, service):
    item = next(iter(service._items))
    ratings = [{"item": item, "rating": 3}] * (MAX_HISTORY + 1)
    response = client.post("/recommendations", json={"ratings": ratings})
    assert response.status_code == 422 and "10000" in detail(response)


def test_bodies_over_the_cap_are_413(service):
    client = TestClient(create_app(service, max_body=1000))
    big = json.dumps({"ratings": [{"item": "100", "rating": 3}] * 100})
    response = client.post("/recommendations", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1,000 bytes" in response.json()["detail"]

    def chunks():  # no content-length: the cap counts what arrives
        for _ in range(20):
            yield b" " * 100

    assert client.post("/recommendations", content=chunks()).status_code == 413
    assert client.post("/recommendations", json={"ratings": []}).status_code == 200


def test_api_key_guards_the_api_only(service):
    client = TestClient(create_app(service, api_key="s3cret"))
    user = known_user(service)
    assert client.get("/model").status_code == 401
    assert client.get("/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/recommendations", json={"ratings": []}).status_code == 401
    ok = {"Authorization": "Bearer s3cret"}
    assert client.get("/model", headers=ok).status_code == 200
    assert client.get(f"/users/{user}/recommendations", headers=ok).status_code == 200
    for path in ("/health", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert "bearer" in json.dumps(client.get("/openapi.json").json()["components"]["securitySchemes"]).lower()


def test_docs_are_served_by_the_app_itself(client):
    import re

    page = client.get("/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page) + re.findall(r"url: ?'([^']+)'", page)
    assert assets, page
    for url in assets:
        assert not url.startswith(("http:", "https:", "//")), f"/docs loads {url} from outside"
        assert client.get(url).status_code == 200, url


def fuzzed(app, tags: set[str] | None = None) -> tuple[int, list[str]]:
    """schemathesis draws requests from the app's own OpenAPI schema (of the operations with one
    of ``tags``, or all): how many operations, and the failures (a 5xx, or a response that does
    not match its documented schema; a bounded number of examples per operation)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []

    def fuzz(operation):
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            response = case.call()
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
            case.validate_response(response)

        try:
            check()
        except Exception as exc:  # every operation is fuzzed; the failures are reported together
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:400]}")

    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [o for o in operations if tags is None or set(o.definition.raw.get("tags", ())) & tags]
    for operation in operations:
        fuzz(operation)
    return len(operations), failures


def test_schema_fuzzing_finds_no_server_error(client):
    count, failures = fuzzed(client.app)
    assert count == 7
    assert not failures, "\n".join(failures)


# ---- the command --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refuses_bad_setups_in_one_line(run_dir, tmp_path, capsys, monkeypatch):
    def refused(*args) -> tuple[int, str]:
        code = main(["serve", *map(str, args)])
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return code, err

    code, err = refused(tmp_path / "nope")
    assert code == 2 and "no such run folder" in err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.pt").write_bytes(b"not a model")
    code, err = refused(damaged)
    assert code == 1 and "config.json: missing; the folder is incomplete" in err
    monkeypatch.delenv("NEUCF_TEST_UNSET_KEY", raising=False)
    code, err = refused(run_dir, "--api-key-env", "NEUCF_TEST_UNSET_KEY")
    assert code == 2 and "NEUCF_TEST_UNSET_KEY" in err
    code, err = refused(run_dir, "--items", tmp_path / "none.csv")
    assert code == 2 and "none.csv" in err
    code, err = refused(run_dir, "--port", "70000")
    assert code == 2 and "--port" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, err = refused(run_dir, "--port", busy.getsockname()[1])
    assert code == 2 and "cannot listen" in err


def wait_for(url: str, headers=None, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_over_http_and_stops_on_sigint(run_dir, workers):
    port = free_port()
    env = {**os.environ, "NEUCF_TEST_KEY": "k3y"}
    args = [sys.executable, "-m", "neucf", "serve", str(run_dir), "--port", str(port), "--workers", str(workers),
            "--api-key-env", "NEUCF_TEST_KEY"]  # fmt: skip
    server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    key = {"Authorization": "Bearer k3y"}
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(f"{base}/health") == {"status": "ok", "model": "neumf"}
        assert wait_for(f"{base}/model?api_key=s3cret", key)["model"] == "neumf"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/model", timeout=5)
        assert refused.value.code == 401
        with urllib.request.urlopen(urllib.request.Request(f"{base}/health", method="HEAD"), timeout=5) as head:
            assert head.status == 200 and head.read() == b""
        body = b'{"ratings": [], "k": NaN}'
        request = urllib.request.Request(f"{base}/recommendations", data=body, method="POST",
                                         headers={**key, "Content-Type": "application/json"})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as invalid:
            urllib.request.urlopen(request, timeout=5)
        assert invalid.value.code == 422 and "finite number" in invalid.value.read().decode()
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "serving neumf" in err
    # the access log is on stderr, with paths and without their query strings
    assert out == "" and '"GET /model HTTP/1.1" 200' in err and "s3cret" not in err and "api_key" not in err, err
    assert '"POST /recommendations HTTP/1.1" 422' in err


# ---- the page, in a real browser --------------------------------------------------------------
@pytest.fixture
def live_server(service):
    """The app with an API key, served by uvicorn on a free loopback port in a thread."""
    with served(create_app(service, api_key="page-key")) as base:
        yield base


def test_page_in_chromium_rates_three_items_and_shows_recommendations(live_server, service):
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    outside = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()

        def only_loopback(route):  # the page and the docs must need nothing from outside
            if route.request.url.startswith(live_server):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_loopback)
        page.set_default_timeout(20_000)
        page.goto(live_server + "/")
        page.fill("#api-key", "page-key")  # the page asks for the key once
        page.click("#key-form button")
        page.wait_for_selector("#results li .stars button")
        for n in range(3):
            row = page.locator("#results li").nth(n)
            row.locator(".stars button").nth(4 - n).click()
            page.wait_for_function(f"document.querySelectorAll('#rated li:not(.empty)').length === {n + 1}")
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('3 ratings')")
        recommended = page.locator("#recommendations li").all_inner_texts()
        assert len(recommended) == 10 and all("Movie" in text for text in recommended)
        rated = page.locator("#rated li").all_inner_texts()
        assert not {t.split("\n")[0] for t in rated} & {t.split("\n")[0] for t in recommended}

        page.fill("#user-id", known_user(service))
        page.click("#user-button")
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('user')")
        assert page.locator("#recommendations li").count() == 10

        page.goto(live_server + "/docs")  # Swagger UI, from the app's own files, renders the API
        page.wait_for_selector(".opblock", timeout=30_000)
        assert page.locator(".opblock").count() >= 6
        browser.close()
    assert not outside, f"fetched from outside: {outside}"
