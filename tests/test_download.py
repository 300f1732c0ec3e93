"""The download path, against a local HTTP server the test starts (no internet)."""

import hashlib
import http.server
import threading
import zipfile
from functools import partial

import pytest

from conftest import synthetic_ratings
from neucf.cli import main
from neucf.datasets import DatasetSpec, fetch, load, load_movielens
from neucf.errors import DataError


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def build_ml100k_zip(path):
    ratings = synthetic_ratings()
    lines = "".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ratings.to_frame().itertuples(index=False))
    titles = "".join(f"{i}|Movie {i} (1999)|01-Jan-1999||http://x|0|1\n" for i in ratings.item_ids)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/u.data", lines)
        archive.writestr("ml-100k/u.item", titles.encode("latin-1"))
    return ratings


def test_download_verifies_caches_and_loads(server, tmp_path):
    root, base = server
    expected = build_ml100k_zip(root / "ml-100k.zip")
    md5 = hashlib.md5((root / "ml-100k.zip").read_bytes()).hexdigest()
    spec = DatasetSpec("ml-test", "ml-100k.zip", md5, url=f"{base}/ml-100k.zip")
    cache = tmp_path / "cache"
    path = fetch(spec, cache)
    assert path == cache / "ml-100k.zip" and path.is_file()
    ratings = load_movielens(path)
    assert len(ratings) == len(expected) and ratings.scale == (1.0, 5.0)
    assert ratings.item_titles[0] == f"Movie {ratings.item_ids[0]} (1999)"
    # a second fetch uses the cache: it works with the server gone
    (root / "ml-100k.zip").unlink()
    assert fetch(spec, cache) == path


def test_corrupted_download_is_refused_and_not_kept(server, tmp_path):
    root, base = server
    build_ml100k_zip(root / "ml-100k.zip")
    spec = DatasetSpec("ml-test", "ml-100k.zip", "0" * 32, url=f"{base}/ml-100k.zip")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not match its published checksum"):
        fetch(spec, cache)
    assert not any(cache.iterdir()), "a corrupted download must leave no file behind"


def test_unreachable_server_says_how_to_use_a_local_copy(tmp_path, server):
    _, base = server
    spec = DatasetSpec("ml-test", "ml-100k.zip", None, url=f"{base}/missing/ml-100k.zip")
    with pytest.raises(DataError, match="could not download ml-test .* pass --data"):
        fetch(spec, tmp_path / "cache")


def test_cli_dataset_uses_mirror_and_checksum(server, tmp_path, monkeypatch, capsys):
    root, base = server
    build_ml100k_zip(root / "ml-100k.zip")
    monkeypatch.setenv("NEUCF_MOVIELENS_URL", base)
    # the served zip is not the real ml-100k, so the official checksum must reject it
    code = main(["data", "describe", "--dataset", "ml-100k", "--data-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    # the progress bar shares stderr; the error itself is one line
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "checksum" in errors[0]
    # a copy already in the cache is used as is, and so is a zip given with --data
    cached = tmp_path / "c2"
    cached.mkdir()
    build_ml100k_zip(cached / "ml-100k.zip")
    assert main(["data", "describe", "--dataset", "100k", "--data-dir", str(cached), "--json"]) == 0
    assert '"ratings"' in capsys.readouterr().out
    assert len(load(data=cached / "ml-100k.zip")) > 0
