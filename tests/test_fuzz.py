"""Fuzzing the delimited reader and ``neucf data describe``: random bytes and random flags must
give exit 0, 1 or 2, one line on error, no traceback, no "unexpected", and leave the input as it was."""

import json
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from neucf.cli import main
from neucf.datasets import LoaderOptions, read_ratings_file
from neucf.errors import NeucfError

FIELD = st.one_of(
    st.integers(-5, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet=string.ascii_letters + string.digits + " .+-_\"'", max_size=8),
    st.sampled_from(["userId", "movieId", "rating", "timestamp", "user", "item", "", "0042", "\ufeff1"]),
)
SEPARATORS = st.sampled_from([",", "\t", "::", " ", ";", "|"])


@st.composite
def table_bytes(draw) -> bytes:
    """Mostly table-shaped text (so the parser gets deep), sometimes raw bytes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=300))
    sep = draw(SEPARATORS)
    rows = draw(st.lists(st.lists(FIELD, min_size=1, max_size=5), min_size=0, max_size=12))
    text = "\n".join(sep.join(r) for r in rows) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))
    data = text.encode(draw(st.sampled_from(["utf-8", "latin-1"])), errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


FLAGS = st.lists(
    st.sampled_from([
        ["--sep", ","], ["--sep", "tab"], ["--sep", ";;"], ["--sep", ""], ["--header"], ["--no-header"],
        ["--columns", "user,item,rating"], ["--columns", "user,item,rating,timestamp"], ["--columns", "item,user,rating,-"],
        ["--columns", "user,user,rating"], ["--columns", "x"], ["--duplicates", "mean"], ["--duplicates", "last"],
        ["--duplicates", "nope"], ["--rating-scale", "1,5"], ["--rating-scale", "5,1"], ["--rating-scale", "a"],
        ["--rating-scale", "0,inf"], ["--json"], ["--bogus"],
    ]),
    max_size=4,
)  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_bytes())
@example(b'\xef\xbb\xbf",USERID\n"')  # a quoted header field with a line break (found by CI's run)
def test_reader_either_reads_or_raises_a_neucf_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.csv"
        path.write_bytes(data)
        try:
            ratings = read_ratings_file(path, LoaderOptions())
        except NeucfError as exc:
            assert "\n" not in str(exc)
        else:
            assert len(ratings) > 0
            assert ratings.scale is None if ratings.implicit else ratings.scale[0] <= ratings.scale[1]
        assert path.read_bytes() == data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_bytes(), FLAGS)
def test_data_describe_never_crashes_and_never_changes_its_input(data, flags):
    import contextlib
    import io

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.csv"
        path.write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["data", "describe", "--data", str(path), *[x for f in flags for x in f]])
        text = err.getvalue()
        assert code in (0, 1, 2), text
        assert "Traceback" not in text and "unexpected" not in text, text
        if code:
            assert text.strip().splitlines()[-1].startswith("error: "), text
            assert len([ln for ln in text.splitlines() if ln.startswith("error: ")]) == 1
        assert path.read_bytes() == data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table_bytes())
@example(b"user,item\n196,242,5\n")
@example(b'user,item\n"1\n')
def test_pairs_and_history_tables_either_read_or_raise_one_line(data):
    from neucf.datasets import read_table

    for columns in (("user", "item"), ("user", "item", "rating")):
        try:
            table = read_table(data, columns, name="t.csv")
        except NeucfError as exc:
            assert "\n" not in str(exc)
        else:
            assert list(table.columns[: len(columns)]) == list(columns) and len(table) > 0


JSON_NUMBER = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "0", "-0.0", "3", "5", "1e308"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
)


@pytest.fixture(scope="module")
def app_client():
    from fastapi.testclient import TestClient

    from conftest import synthetic_ratings
    from neucf.models import Biases
    from neucf.serving import RecommendationService, create_app

    return TestClient(create_app(RecommendationService(Biases().fit(synthetic_ratings()))))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(rating=JSON_NUMBER, k=JSON_NUMBER, path=st.sampled_from(["/recommendations", "/predictions"]))
def test_request_bodies_with_any_number_are_never_a_server_error(app_client, rating, k, path):
    extra = f'"k": {k}' if path == "/recommendations" else '"items": ["100"]'
    body = f'{{"ratings": [{{"item": "100", "rating": {rating}}}], {extra}}}'
    response = app_client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 422), (body, response.status_code, response.text)
    json.loads(response.text, parse_constant=lambda c: pytest.fail(f"{c} in the answer to {body}"))
