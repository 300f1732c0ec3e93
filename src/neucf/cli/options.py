"""Option groups the commands share: data flags, split flags and model flags.

Each group is one decorator that adds its options to a command's signature and hands the
command one typed value (:class:`DataFlags`, :class:`SplitFlags`, or the model parameters
that were given). Model flags are generated from the registered models' config dataclasses,
so a new model's parameters become flags without touching the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import stat
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from ..attributes import movielens_attributes, parse_types, read_attributes, read_folder_attributes
from ..datasets import (
    LoaderOptions,
    Ratings,
    dataset_spec,
    filter_for_split,
    load,
    load_split_dir,
    movielens_layout,
    read_ratings_file,
)
from ..errors import UsageError, stop_handler
from ..files import checksum
from ..models import model_class, model_classes
from ..models.registry import DEFAULT_MODEL
from ..splits import SPLITTERS, Split, Splitter, get_splitter
from ..training import TrainConfig

log = logging.getLogger("neucf.cli")


def work_done(what: str):
    """A callback for :func:`~neucf.files.output_dir` and :func:`~neucf.files.atomic_write`'s
    ``on_commit``: tells the command line's signal handler that ``what`` (``"runs/u1 was
    written"``) is complete, so that a signal arriving after it ends the command with exit
    code 0 and says so, instead of reporting the output as lost."""

    def done() -> None:
        stop = stop_handler()
        if stop is not None:
            stop.done(what)

    return done


def warn_unused_weights(ratings: Ratings, models) -> None:
    """One warning line when interactions carry weights (counts) that ``models`` (fitted
    models or classes) do not read."""
    ignoring = [m.name for m in models if not m.uses_weights]
    if ratings.implicit and ignoring and len(ratings) and bool((ratings.ratings != 1).any()):
        readers = [m.name for m in model_classes() if m.uses_weights]
        log.warning(
            "the interactions' weights (counts) are not used by %s: each interaction counts once (read by: %s)",
            ", ".join(dict.fromkeys(ignoring)), ", ".join(dict.fromkeys(readers)) or "no model",
        )  # fmt: skip


def check_input(path: Path, flag: str) -> None:
    """An input path must exist and be readable (a usage error, exit 2, before any work)."""
    import os

    if str(path) == "-":
        return
    if not path.exists():
        raise UsageError(f"{flag} {path}: no such file or folder")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise UsageError(f"{flag} {path}: not readable (permission denied)")


def option_group(target: str, options: dict[str, tuple[object, object]], make):
    """A decorator that adds ``options`` (name -> (annotation, default)) to a command and passes
    the command ``make(**their values)`` as its ``target`` argument instead."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != target]
        shared = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint)
            for name, (hint, default) in options.items()
        ]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {name: kwargs.pop(name) for name in options}
            return command(**{target: make(**values)}, **kwargs)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
        wrapper.__signature__ = signature.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


# ---- data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataFlags:
    """The flags every data-reading command shares: where the ratings are and how to read them."""

    data: Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    sep: str | None = None
    header: bool | None = None
    columns: str | None = None
    duplicates: str = "error"
    rating_scale: str | None = None
    item_attributes: Path | None = None
    user_attributes: Path | None = None
    attribute_types: str | None = None
    ignore_attributes: bool = False
    movielens_tags: bool = False

    def options(self) -> LoaderOptions:
        """The loader options these flags describe (usage errors for bad values)."""
        sep = self.sep
        if sep is not None:
            sep = {"tab": "\t", "\\t": "\t", "space": " "}.get(sep, sep)
        scale = None
        if self.rating_scale is not None:
            try:
                lo, hi = (float(x) for x in self.rating_scale.split(","))
            except ValueError:
                raise UsageError(f"--rating-scale {self.rating_scale!r} must be MIN,MAX, e.g. 1,5") from None
            scale = (lo, hi)
        cols = tuple(c.strip() for c in self.columns.split(",")) if self.columns is not None else None
        return LoaderOptions(sep=sep, header=self.header, columns=cols, duplicates=self.duplicates, scale=scale)

    def check(self) -> None:
        """Validate the flags and the input path before any work (usage errors, exit 2)."""
        if self.data is not None and self.dataset is not None:
            raise UsageError("give exactly one of --data PATH or --dataset NAME")
        self.options()
        if self.data is not None:
            check_input(self.data, "--data")
        if self.dataset is not None:
            dataset_spec(self.dataset)
        for path, flag in ((self.item_attributes, "--item-attributes"), (self.user_attributes, "--user-attributes")):
            if path is not None:
                if self.ignore_attributes:
                    raise UsageError(f"give {flag} or --ignore-attributes, not both")
                check_input(path, flag)
        parse_types(self.attribute_types)

    def attributes(self, folder: Path | None = None) -> tuple:
        """The item and user attribute tables (:class:`~neucf.attributes.Attributes`, None where
        there are none): the files of ``--item-attributes`` and ``--user-attributes``, else
        those of the split folder ``folder`` (``items.csv``, ``users.csv``), else those a
        MovieLens release brings (see :func:`~neucf.attributes.movielens_attributes`); none
        with ``--ignore-attributes``. ``--attribute-types`` types their columns."""
        if self.ignore_attributes:
            return None, None
        types = parse_types(self.attribute_types)
        if folder is not None:
            found = list(read_folder_attributes(folder, types))
        else:
            local = self.local_path()
            found = list(movielens_attributes(local, self.movielens_tags) if local is not None else (None, None))
        for k, path in enumerate((self.item_attributes, self.user_attributes)):
            if path is not None:
                found[k] = read_attributes(path, types, name=str(path), partial=True)
        named = set().union(*(t.kinds for t in found if t is not None))
        missing = sorted(set(types) - named)
        if missing:
            raise UsageError(f"--attribute-types names {missing[0]!r}, a column no attribute file has")
        for table, side in zip(found, ("item", "user")):
            if table is not None:
                log.info("%s attributes: %d rows, %s", side, len(table),
                         ", ".join(f"{c} ({k})" for c, k in table.kinds.items()) or "a title only")  # fmt: skip
        return found[0], found[1]

    @functools.cached_property
    def stream(self) -> bytes | None:
        """What ``--data`` holds when it is a stream (``-``: standard input; a pipe such as
        ``<(zcat f.gz)``), read once: a stream cannot be read again, and a run's checksum must
        be of what was read. None for a file, a folder or a dataset."""
        if not self.reads_stream():
            return None
        if str(self.data) == "-":
            return sys.stdin.buffer.read()
        with open(self.data, "rb") as pipe:
            return pipe.read()

    def reads_stream(self) -> bool:
        """Whether ``--data`` is a stream (standard input, a pipe), which can be read once."""
        if self.data is None or str(self.data) == "-":
            return self.data is not None
        try:
            return stat.S_ISFIFO(self.data.stat().st_mode)
        except OSError:
            return False

    def load(self) -> Ratings:
        """Load the ratings these flags describe, with their attributes (:meth:`attributes`)."""
        if self.stream is not None:
            name = "standard input" if str(self.data) == "-" else str(self.data)
            ratings = read_ratings_file(self.stream, self.options(), name=name)
        else:
            ratings = load(data=self.data, dataset=self.dataset, options=self.options(), directory=self.data_dir)
        return ratings.with_attributes(*self.attributes())

    def checksum(self) -> str | None:
        """SHA-256 of the input file or folder (a stream: of what was read; ``--dataset``: the
        downloaded archive)."""
        if self.stream is not None:
            return hashlib.sha256(self.stream).hexdigest()
        path = self.local_path()
        return None if path is None else checksum(path)

    def local_path(self) -> Path | None:
        """Where the data lies on this machine: ``--data`` (None for a stream), or the
        downloaded archive of ``--dataset`` (None before it is downloaded)."""
        if self.dataset is not None:
            from ..datasets import data_dir

            archive = data_dir(self.data_dir) / dataset_spec(self.dataset).filename
            return archive if archive.is_file() else None
        return None if self.data is None or self.reads_stream() else self.data

    def holds_ml100k(self) -> bool:
        """Whether the data is the MovieLens 100k release (``--dataset ml-100k``, its folder or
        zip, or its ``u.data``), whose own folds ``--split movielens`` takes."""
        if self.dataset is not None:
            return dataset_spec(self.dataset).name == "ml-100k"
        if self.data is None or self.reads_stream():
            return False
        return self.data.name == "u.data" or movielens_layout(self.data) == "u.data"

    def default_split(self) -> str:
        """The split used when ``--split`` is not given: MovieLens 100k's own u1..u5 folds for
        that release, a seeded random 80/10/10 split for any other data (said in the log)."""
        return "movielens" if self.holds_ml100k() else "random"

    def check_split(self, split: str | None) -> None:
        """Refuse ``--split movielens`` (MovieLens 100k's own folds) for other data."""
        if split == "movielens" and not self.holds_ml100k():
            raise UsageError(
                f"--split movielens takes MovieLens 100k's own folds (u1..u5, ua, ub), and {self.data or self.dataset} "
                "is not that release; use --split random, kfold, coverage or temporal"
            )

    def describe(self) -> dict:
        """Where the data came from, for a run's config: as given, and the file's absolute path
        with links resolved (``path``; None for a stream or a dataset), which outputs are
        checked against (see :func:`~neucf.runs.recorded_inputs`)."""
        path = None if self.data is None or self.stream is not None else str(self.data.resolve())
        return {"data": str(self.data) if self.data else None, "dataset": self.dataset, "path": path,
                "sha256": self.checksum(), "attributes": self.describe_attributes()}  # fmt: skip

    def describe_attributes(self) -> dict:
        """The attribute flags, for a run's config: each file's absolute path and SHA-256."""
        files = {side: {"path": str(p.resolve()), "sha256": checksum(p)}
                 for side, p in (("items", self.item_attributes), ("users", self.user_attributes)) if p is not None}  # fmt: skip
        return {"files": files, "types": self.attribute_types, "ignored": self.ignore_attributes}


_DATA_OPTIONS = {
    "data": (Annotated[Path | None, typer.Option("--data", help="A MovieLens folder or zip, or any ratings file.")], None),
    "dataset": (Annotated[str | None, typer.Option("--dataset", help="A built-in dataset, e.g. ml-100k (downloaded once).")], None),
    "data_dir": (Annotated[Path | None, typer.Option("--data-dir", help="Download cache (default $NEUCF_DATA_DIR or the platform cache).")], None),
    "sep": (Annotated[str | None, typer.Option("--sep", help="Field separator (detected when omitted; 'tab' or '\\t' for tab).")], None),
    "header": (Annotated[bool | None, typer.Option("--header/--no-header", help="Whether the first line names the columns (detected).")], None),
    "columns": (Annotated[str | None, typer.Option("--columns", help="Role of each column in order: user,item,rating[,timestamp]; '-' skips one.")], None),
    "duplicates": (Annotated[str, typer.Option("--duplicates", help="Repeated (user, item) pairs: error, last, mean, or sum (interactions: their weights add up).")], "error"),
    "rating_scale": (Annotated[str | None, typer.Option("--rating-scale", help="MIN,MAX of the rating scale (inferred when omitted).")], None),
    "item_attributes": (Annotated[Path | None, typer.Option("--item-attributes", help="What the items are: a delimited file with a header, the item id first (genres, year...).")], None),
    "user_attributes": (Annotated[Path | None, typer.Option("--user-attributes", help="What the users are: a delimited file with a header, the user id first (age, occupation...).")], None),
    "attribute_types": (Annotated[str | None, typer.Option("--attribute-types", help="Column kinds over the inferred ones: age=category,zip=category (numeric, category, labels).")], None),
    "ignore_attributes": (Annotated[bool, typer.Option("--ignore-attributes", help="Read no attributes, not even a MovieLens release's or a split folder's own.")], False),
    "movielens_tags": (Annotated[bool, typer.Option("--movielens-tags", help="Also give items the tags of a MovieLens release's tags.csv (ml-latest, ML-20M..32M); off by default: users tag what they watched.")], False),
}  # fmt: skip

#: gives a command the shared data flags as one ``source: DataFlags`` argument
data_options = option_group("source", _DATA_OPTIONS, DataFlags)


# ---- splits -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitFlags:
    """How the ratings are divided: a named split and fold, or a folder written by ``data split``."""

    split: str | None = None
    fold: str | None = None
    min_item_ratings: int | None = None
    min_user_ratings: int = 0
    k_core: int | None = None
    split_dir: Path | None = None
    defaulted: bool = False  # the split was not given but chosen for the data (said in the log)

    def for_data(self, source: DataFlags) -> SplitFlags:
        """These flags with ``--split`` filled in when it was not given (see
        :meth:`DataFlags.default_split`), or checked against the data when it was
        (:meth:`DataFlags.check_split`)."""
        if self.split is not None or self.split_dir is not None:
            source.check_split(self.split)
            return self
        return dataclasses.replace(self, split=source.default_split(), defaulted=True)

    def splitter(self) -> Splitter:
        """The named split, its fold checked (before any data is read)."""
        splitter = get_splitter(self.split or "movielens")
        splitter.check_fold(self.fold)
        return splitter

    def check(self) -> None:
        """Validate the split flags (or the split folder) before any data is read."""
        if self.split_dir is None:
            self.splitter()
            return
        check_input(self.split_dir, "--split-dir")
        for part in ("train", "test"):
            if not (self.split_dir / f"{part}.csv").is_file():
                raise UsageError(f"--split-dir {self.split_dir} has no {part}.csv; write one with neucf data split")

    def load(self, source: DataFlags, seed: int) -> tuple[Ratings, Split]:
        """Ratings and their split, from ``--split-dir`` or from the data flags plus ``--split``."""
        if self.split_dir is not None:
            if source.data is not None or source.dataset is not None:
                raise UsageError("give either --split-dir or --data/--dataset with --split, not both")
            ratings, parts = load_split_dir(self.split_dir)
            ratings = ratings.with_attributes(*source.attributes(self.split_dir))
            log.info("split from %s: %s", self.split_dir, ", ".join(f"{k} {v:,}" for k, v in parts.sizes().items()))
            return ratings, parts
        if self.defaulted:
            log.info(
                "no --split given: the %s split, the default for this data (--split to choose another)", self.split
            )
        return self.divide(source.load(), seed)

    def divide(self, ratings: Ratings, seed: int) -> tuple[Ratings, Split]:
        """``ratings`` filtered as these flags say (the split's own filter, ``--k-core``,
        ``--min-*-ratings``) and split."""
        splitter = self.splitter()
        ratings = filter_for_split(ratings, splitter, self.min_item_ratings, self.min_user_ratings, self.k_core)
        return ratings, splitter.split(ratings, fold=self.fold, seed=seed)

    def describe(self, seed: int) -> dict:
        """The split's settings, for a run's config."""
        if self.split_dir is not None:
            return {"split_dir": str(self.split_dir), "path": str(self.split_dir.resolve()),
                    "sha256": checksum(self.split_dir)}  # fmt: skip
        return {"name": self.split, "fold": self.fold, "seed": seed, "min_item_ratings": self.min_item_ratings,
                "min_user_ratings": self.min_user_ratings, "k_core": self.k_core}  # fmt: skip


SplitOpt = Annotated[
    str | None,
    typer.Option(
        "--split",
        help=f"How to divide the ratings: {', '.join(SPLITTERS)} (default: movielens for MovieLens 100k, else random).",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (>= 0); the same seed gives the same result.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace a non-empty --out that is not a neucf output of this kind.")
]
MinItemOpt = Annotated[
    int | None, typer.Option("--min-item-ratings", min=0, help="Drop items with fewer ratings (coverage default 3).")
]


def split_options(default_split: str | None = None, split_dir: bool = True):
    """Give a command the split flags as one ``splitting: SplitFlags`` argument."""
    options = {
        "split": (SplitOpt, default_split),
        "fold": (Annotated[str | None, typer.Option("--fold", help="Fold: 1..5 for kfold, 1-5/a/b for movielens, k for seed + k - 1 otherwise.")], None),
        "min_item_ratings": (MinItemOpt, None),
        "min_user_ratings": (Annotated[int, typer.Option("--min-user-ratings", min=0, help="Drop users with fewer ratings.")], 0),
        "k_core": (Annotated[int | None, typer.Option("--k-core", min=1, help="Keep users and items with >= N ratings or interactions, repeated until stable.")], None),
    }  # fmt: skip
    if split_dir:
        options["split_dir"] = (
            Annotated[
                Path | None, typer.Option("--split-dir", help="A folder written by 'neucf data split', used as is.")
            ],
            None,
        )
    return option_group("splitting", options, SplitFlags)


# ---- models -------------------------------------------------------------------------------
def _model_parameters() -> dict[str, tuple[type, str, dict]]:
    """Every registered model's parameters: name -> (type, help, {default: [models]})."""
    found: dict[str, tuple[type, str, dict]] = {}
    for cls in model_classes():
        name = cls.name if cls is model_class(cls.name) else f"{cls.name} (ranking)"
        for field in cls.parameters().values():
            owner = next(
                c for c in (cls.config_class, TrainConfig) if field.name in {f.name for f in dataclasses.fields(c)}
            )
            kind = typing.get_type_hints(owner)[field.name]
            help_text = field.metadata.get("help", "")
            default = field.default if field.default is not dataclasses.MISSING else None
            default = getattr(cls, "train_defaults", {}).get(field.name, default)
            entry = found.setdefault(field.name, (kind, help_text, {}))
            entry[2].setdefault(default, []).append(name)
    return found


def model_options():
    """Flags for every parameter of every registered model (generated from their config
    dataclasses); the command receives ``params``: only the flags that were given."""
    options = {}
    for name, (kind, help_text, defaults) in _model_parameters().items():
        flag = name.replace("_", "-")
        by_default = "; ".join(
            f"{'/'.join(models)} {'from the data' if value is None else value}" for value, models in defaults.items()
        )
        text = f"{help_text} Default: {by_default}.".strip()
        decl = f"--{flag}/--no-{flag}" if kind is bool else f"--{flag}"
        options[name] = (Annotated[kind | None, typer.Option(decl, help=text)], None)
    return option_group("params", options, lambda **given: {k: v for k, v in given.items() if v is not None})


def read_config(path: Path | None) -> tuple[str | None, dict]:
    """``(model, params)`` from a ``--config`` JSON (``neucf tune``'s best.json or a run's
    config.json); a top-level ``seed`` is kept in ``params`` as ``seed``."""
    if path is None:
        return None, {}
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("params", {}), dict):
        raise UsageError(f"--config {path}: expected a JSON object with 'model' and 'params'")
    params = dict(loaded.get("params", loaded))
    params.pop("model", None)
    params.pop("task", None)
    if "params" in loaded and "seed" in loaded:
        params["seed"] = loaded["seed"]
    model = loaded.get("model")
    return (str(model) if model is not None else None), params


def config_task(path: Path | None) -> str | None:
    """The task a ``--config`` (a run's config.json, a tune's best.json) was made for, if it says."""
    if path is None:
        return None
    try:
        task = json.loads(Path(path).read_text()).get("task")
    except (OSError, ValueError, AttributeError):
        return None  # read_config says what is wrong with it
    return task if task in ("rating", "ranking") else None


def resolve_model(
    model: str | None, config: Path | None, flags: dict, seed: int | None = None, task: str = "rating"
) -> tuple[str, dict, int]:
    """Model name, parameters and seed: explicit flags override ``--config``, which overrides
    each model's own defaults (a parameter left unset keeps the model's default; the seed
    left unset is the config's, else 0; the model left unset is the task's default).

    Examples:
        >>> resolve_model(None, None, {"factors": 8})
        ('neumf', {'factors': 8}, 0)
        >>> resolve_model(None, None, {}, task="ranking")[0]
        'hybrid'
    """
    config_model, params = read_config(config)
    config_seed = params.pop("seed", None)
    if seed is None:
        seed = config_seed if config_seed is not None else 0
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"--config {config}: seed must be a whole number >= 0, got {seed!r}")
    name = model or config_model or DEFAULT_MODEL[task]
    if config_model and model and config_model != model:
        # the config's parameters were chosen for another model: keep those this one takes
        accepted = model_class(model, task).parameters()
        dropped = sorted(k for k in params if k not in accepted)
        if dropped:
            log.warning(
                "--config %s is for %s: ignoring %s, which %s does not take",
                config,
                config_model,
                ", ".join(dropped),
                model,
            )
        params = {k: v for k, v in params.items() if k in accepted}
    return name, {**params, **flags}, seed
