import numpy as np
import pytest

from conftest import synthetic_ratings
from neucf.datasets import LoaderOptions, Ratings, filter_min_ratings, load, read_ratings_file, sniff
from neucf.errors import DataError, UsageError


@pytest.mark.parametrize("sep,header", [(",", True), ("\t", False), ("::", False), (" ", False), (";", True)])
def test_round_trip_detects_format(tmp_path, sep, header):
    original = synthetic_ratings()
    path = tmp_path / "r.txt"
    frame = original.to_frame()
    text = (
        (sep.join(frame.columns) + "\n" if header else "")
        + "\n".join(sep.join(str(v) for v in row) for row in frame.itertuples(index=False))
        + "\n"
    )
    path.write_text(text)
    options = LoaderOptions(sep=";") if sep == ";" else LoaderOptions()
    loaded = load(data=path, options=options)
    assert len(loaded) == len(original)
    np.testing.assert_array_equal(loaded.user_ids[loaded.users], original.user_ids[original.users])
    np.testing.assert_array_equal(loaded.item_ids[loaded.items], original.item_ids[original.items])
    np.testing.assert_array_equal(loaded.ratings, original.ratings)
    np.testing.assert_array_equal(loaded.timestamps, original.timestamps)


def test_string_ids_half_stars_and_column_roles(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("item,ignored,user,score\nx,0,alice,4.5\ny,0,bob,0.5\nx,0,bob,3\n")
    r = load(data=path, options=LoaderOptions(columns=("item", "-", "user", "rating")))
    assert r.user_ids.tolist() == ["alice", "bob"]
    assert r.item_ids.tolist() == ["x", "y"]
    assert r.scale == (0.5, 4.5)
    assert r.user_item[r.user_index(["bob"])[0], r.item_index(["x"])[0]] == 3.0


def test_header_aliases_are_recognised():
    r = read_ratings_file(b"movieId,userId,rating,timestamp\n10,1,4,5\n11,1,3,6\n")
    assert r.user_ids.tolist() == [1] and r.item_ids.tolist() == [10, 11]


def test_matrices_are_sparse_and_consistent():
    r = synthetic_ratings()
    ui, iu = r.user_item, r.item_user
    assert ui.format == "csr" and iu.format == "csr" and ui.dtype == np.float32
    assert ui.nnz == len(r) and (iu != ui.T).nnz == 0
    assert ui[r.users[5], r.items[5]] == r.ratings[5]


def test_given_scale_is_kept_and_enforced():
    r = read_ratings_file(b"1,1,2\n1,2,3\n", LoaderOptions(scale=(1, 5)))
    assert r.scale == (1.0, 5.0)
    with pytest.raises(DataError, match=r"line 2: rating 7 is outside the scale 1\.\.5"):
        read_ratings_file(b"1,1,2\n1,2,7\n", LoaderOptions(scale=(1, 5)), name="f.csv")


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"user,item,rating\n", "no ratings"),
        (b"1,2,3\n1,3,x\n", r"f\.csv line 2: rating 'x' is not a finite number"),
        (b"1,2,3\n1,3,nan\n", r"line 2: rating .* not a finite number"),
        (b"1,2,3\n1,3,1e300\n", r"line 2: rating .* is too large \(ratings are 32-bit"),
        (b"1,2,3\n1,3,-inf\n", r"line 2: rating .* not a finite number"),
        (b"1,2,3\n1,3\n", r"line 2: expected 3 fields"),
        (b"1,2,3\n1,3,4,5,6\n", r"f\.csv: malformed line .*line 2"),
        (b"1,2,3\n\n1,3,4\n", r"line 2: expected"),
        (b"1,2,3,4\n1,3,4,later\n", r"line 2: timestamp 'later'"),
        (b"a,b,c,d,e\n1,2,3,4,5\n", "--columns"),
    ],
)
def test_bad_files_name_the_line(content, pattern):
    with pytest.raises(DataError, match=pattern):
        read_ratings_file(content, name="f.csv")


def test_trailing_blank_lines_are_fine():
    assert len(read_ratings_file(b"1,2,3\n1,3,4\n\n\n")) == 2


def test_duplicates_policies():
    content = b"1,2,3\n1,3,4\n1,2,5\n"
    with pytest.raises(DataError, match=r"lines 1 and 3: duplicate rating of item 2 by user 1; pass --duplicates"):
        read_ratings_file(content, name="f.csv")
    last = read_ratings_file(content, LoaderOptions(duplicates="last"))
    assert sorted(zip(last.items.tolist(), last.ratings.tolist())) == [(0, 5.0), (1, 4.0)]
    mean = read_ratings_file(content, LoaderOptions(duplicates="mean"))
    assert sorted(zip(mean.items.tolist(), mean.ratings.tolist())) == [(0, 4.0), (1, 4.0)]


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError):
        LoaderOptions(duplicates="first")
    with pytest.raises(UsageError):
        LoaderOptions(columns=("user", "rating"))
    with pytest.raises(UsageError):
        LoaderOptions(columns=("user", "item", "rating", "weight"))
    with pytest.raises(UsageError):
        LoaderOptions(scale=(5, 1))
    with pytest.raises(UsageError, match="exactly one"):
        load()


def test_missing_file_and_unknown_ids(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(data=tmp_path / "nope.csv")
    r = synthetic_ratings()
    with pytest.raises(DataError, match="unknown user id 99999"):
        r.user_index([99999])
    assert r.user_index(["1"]).tolist() == [0]  # ids typed as text match integer ids


def test_sniff():
    assert sniff("1::2::3::4") == ("::", False)
    assert sniff("1 2 3") == (" ", False)
    with pytest.raises(DataError, match="--sep"):
        sniff("abc")


@pytest.mark.parametrize("until_stable", [False, True])
def test_filter_min_ratings(until_stable):
    r = Ratings.from_arrays([1, 2, 3, 1, 2, 4], ["a", "a", "a", "b", "b", "c"], [1, 2, 3, 4, 5, 1])
    f = filter_min_ratings(r, min_item=2, min_user=2, until_stable=until_stable)
    counts_u = np.bincount(f.users)
    counts_i = np.bincount(f.items)
    if until_stable:
        assert (counts_u >= 2).all() and (counts_i >= 2).all()
    assert "c" not in f.item_ids.tolist()
    assert f.n_users == len(np.unique(f.users)) and f.n_items == len(np.unique(f.items))
    # raw ids survive the re-indexing
    assert set(zip(f.user_ids[f.users].tolist(), f.item_ids[f.items].tolist())) <= set(
        zip(r.user_ids[r.users].tolist(), r.item_ids[r.items].tolist())
    )


def test_a_first_line_with_numbers_and_a_bad_rating_is_data_not_a_header(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("1\t1\tfive\t0\n2\t2\t4\t0\n3\t3\t2\t0\n")
    with pytest.raises(DataError, match=r"r\.tsv line 1: rating 'five' is not a finite number"):
        read_ratings_file(path)


def test_a_bad_first_line_in_the_cli_is_one_line_naming_line_1(tmp_path, capsys):
    from neucf.cli import main

    path = tmp_path / "r.tsv"
    path.write_text("1\t1\tfive\t0\n2\t2\t4\t0\n3\t3\t2\t0\n")
    assert main(["data", "describe", "--data", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1" in err


@pytest.mark.parametrize("header", [True, False])
def test_text_ids_with_and_without_a_header(tmp_path, header, caplog):
    path = tmp_path / "r.csv"
    path.write_text(("user,item,rating\n" if header else "") + "u12,j7,3.5\nu13,j7,4\nu12,j8,2\n")
    with caplog.at_level("WARNING", logger="neucf"):
        r = read_ratings_file(path)
    assert len(r) == 3 and sorted(r.user_ids.tolist()) == ["u12", "u13"]
    assert caplog.text == ""  # certain both ways: known names, or a number in the first line


def test_an_uncertain_header_is_taken_and_said_so(tmp_path, caplog):
    path = tmp_path / "r.csv"
    path.write_text("u12,j7,five\nu13,j7,4\nu12,j8,2\n")
    with caplog.at_level("WARNING", logger="neucf"):
        r = read_ratings_file(path)
    assert len(r) == 2
    assert "taking the first line 'u12,j7,five' as a header" in caplog.text and "--no-header" in caplog.text
    with pytest.raises(DataError, match="line 1: rating 'five'"):
        read_ratings_file(path, LoaderOptions(header=False))
