"""Fuzzing the delimited reader and ``neucf data describe``: random bytes and random flags must
give exit 0, 1 or 2, one line on error, no traceback, no "unexpected", and leave the input as it was."""

import string
import tempfile
from pathlib import Path

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
            assert len(ratings) > 0 and ratings.scale[0] <= ratings.scale[1]
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
