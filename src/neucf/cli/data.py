"""``neucf data``: inspect and split ratings data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..attributes import write_folder_attributes
from ..datasets import write_split_dir
from ..files import check_output_dir, output_dir
from .options import DataFlags, ForceOpt, SeedOpt, SplitFlags, data_options, split_options, work_done


def describe(
    source: DataFlags = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Ratings (or interactions), users, items, rating range and values, density.
    Example: neucf data describe --dataset ml-100k"""
    source.check()
    summary = source.load().describe()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        typer.echo(f"{key:>15}: {value}")


def split(
    out: Annotated[Path, typer.Option("--out", help="Folder for train.csv, valid.csv, test.csv.")],
    source: DataFlags = None,
    splitting: SplitFlags = None,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
):
    """Write a split as CSV files (user,item,rating[,timestamp], raw ids) for any library to use,
    with the item and user attributes (items.csv, users.csv and their column kinds,
    attributes.json): the files given, or a MovieLens release's own.
    Example: neucf data split --dataset ml-100k --split random --out split/"""
    source.check()
    splitting = splitting.for_data(source)
    splitting.splitter()  # the split and fold checked before any data is read
    check_output_dir(out, "split", [source.data], force)
    ratings, parts = splitting.divide(source.load(), seed)
    with output_dir(out, "split", [source.data], force, on_commit=work_done(f"{out} was written")) as folder:
        write_split_dir(ratings, parts, folder)
        # what the items and users are, for models and libraries that read it
        write_folder_attributes(folder, ratings.item_attributes, ratings.user_attributes)
    sizes = ", ".join(f"{k} {v:,}" for k, v in parts.sizes().items() if v or k != "valid")
    typer.echo(f"wrote {out}: {sizes}")


def add_commands(app: typer.Typer) -> None:
    """Register the ``data`` command group on ``app``."""
    group = typer.Typer(
        no_args_is_help=True, help="Inspect and split ratings data. Example: neucf data describe --dataset ml-100k"
    )
    group.command("describe")(data_options(describe))
    group.command("split")(data_options(split_options("coverage", split_dir=False)(split)))
    app.add_typer(group, name="data")
