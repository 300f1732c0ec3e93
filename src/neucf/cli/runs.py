"""``neucf train``, ``evaluate``, ``predict`` and ``recommend``: one run folder, from training to use."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from tqdm.auto import tqdm

from ..datasets import read_table
from ..errors import DataError, UsageError
from ..evaluation import sampled_ranking
from ..files import atomic_write, check_output_dir, check_output_file
from ..lists import batch_rows, recommend_batches
from ..metrics import check_relevance
from ..models import make_model, model_class, model_names
from ..models.base import TASKS
from ..models.ranking import HELD_OUT
from ..runs import (
    environment,
    fit_and_score,
    jsonable,
    read_run,
    recorded_inputs,
    run_part,
    wants_ranking,
    write_run,
)
from ..training import join_world, leave_world, resolve_device
from .launch import launch, without_flag
from .options import (
    DataFlags,
    ForceOpt,
    SplitFlags,
    check_input,
    config_task,
    data_options,
    model_options,
    resolve_model,
    split_options,
    warn_unused_weights,
    work_done,
)

log = logging.getLogger("neucf.cli")

RunDirArg = Annotated[Path, typer.Argument(help="A folder written by 'neucf train'.")]


def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    source: DataFlags = None,
    splitting: SplitFlags = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed (>= 0; default: --config's, else 0); the same seed gives the same result.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name (see 'neucf models'); default neumf (ranking: hybrid).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="rating (predict ratings; the default on rated data) or ranking (lists; the default on interactions).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON with model parameters (e.g. from 'neucf tune'); flags override it.")] = None,
    params: dict | None = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (run-time: not saved with the model).")] = "auto",
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar and epoch lines (default: when stderr is a terminal).")] = None,
    ranking: Annotated[bool | None, typer.Option("--ranking/--no-ranking", help="Record ranking metrics of top-10 lists (default: when users x items <= 10^8).")] = None,
    nproc_per_node: Annotated[int | None, typer.Option("--nproc-per-node", min=1, help="Train in this many processes on this machine (data-parallel: gloo on CPU, one GPU each on CUDA).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="A feedback store (a neucf serve --store): leave out the rows of every user erased in it.")] = None,
    force: ForceOpt = False,
):  # fmt: skip
    """Train a model on a split and write a run folder (config, model, learning curve, metrics).
    Example: neucf train --dataset ml-100k --out runs/u1 (lists: --task ranking)"""
    if task is not None and task not in TASKS:
        raise UsageError(f"--task {task!r}: choose rating or ranking")
    task = task or config_task(config)
    # until the data is read, a model without --task is checked as made for rating; flags only
    # a ranking model takes (--relevant) wait for the data: on interactions they are for lists
    name, model_params, seed, estimator, not_for_ratings = _model_for_task(model, config, params, seed, task)
    resolve_device(device)
    inputs = (source.data, splitting.split_dir, config)
    source.check()
    splitting = splitting.for_data(source)
    splitting.check()
    check_output_dir(out, "run", inputs, force)
    erased = _erased(store)
    if nproc_per_node is not None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError("--nproc-per-node starts its own processes: leave it out under torchrun")
        if source.reads_stream():
            raise UsageError(f"--nproc-per-node: each process reads the data, and --data {source.data} is a stream "
                             "that can be read once; save it to a file and give that")  # fmt: skip
        argv = (ctx.obj or {}).get("argv", sys.argv[1:])
        code = launch(without_flag(argv, "--nproc-per-node"), nproc_per_node)
        if code:
            raise typer.Exit(code)
        return
    # under torchrun every process runs this command on the same data and trains its share of
    # each batch; only rank 0 logs, shows progress and writes the run
    world = join_world(device)
    try:
        if world.rank:
            logging.getLogger("neucf").setLevel(logging.WARNING)
        ratings, parts = splitting.load(source, seed)
        if erased:
            from ..feedback import without_erased

            parts = without_erased(ratings, parts, erased)
        train_part, valid_part, test_part = (ratings.subset(getattr(parts, p)) for p in ("train", "valid", "test"))
        if task is None and ratings.implicit:
            # interactions without ratings: lists are all there is to make
            name, model_params, _ = resolve_model(model, config, params, seed, "ranking")
            estimator = make_model(name, task="ranking", seed=seed, **model_params)
            log.info("the data holds interactions without ratings: --task ranking, model %s", name)
        elif not_for_ratings is not None:
            raise not_for_ratings
        warn_unused_weights(ratings, [estimator])
        if len(valid_part) == 0 and (estimator.fitted_by != "closed_form" or estimator.task == "ranking"):
            share, what = (HELD_OUT, "choose its settings") if estimator.task == "ranking" else (0.05, "early stopping")
            share = getattr(getattr(estimator, "training", None), "valid_fraction", share)
            log.info("this split has no validation part: holding out a seeded %d%% of train for %s", 100 * share, what)
        show = (sys.stderr.isatty() if progress is None else progress) and world.rank == 0
        fitted, metrics = fit_and_score(estimator, train_part, valid_part, test_part, device=device, progress=show,
                                        ranking=ranking if world.rank == 0 else False)  # fmt: skip
    finally:
        leave_world()
    if world.rank:
        return
    run_config = {
        "model": name,
        "task": fitted.task,
        "params": fitted.get_params(),
        "seed": seed,
        "source": source.describe() if splitting.split_dir is None else None,
        "split": splitting.describe(seed),
        "sizes": parts.sizes(),
        "runtime": {"device": device, "progress": show, "world_size": world.size},
        "environment": environment(),
    }
    write_run(out, fitted, metrics, run_config, test_part, valid_part, inputs=inputs, force=force,
              on_commit=work_done(f"{out} was written"))  # fmt: skip
    test = metrics["test"]
    if fitted.task == "ranking":
        lists = test["ranking"]
        line = (
            f"{name}: test NDCG@10 {lists['ndcg']:.4f}, recall@10 {lists['recall']:.4f} over {lists['users']:,} users"
        )
    else:
        line = f"{name}: test RMSE {test['rmse']:.4f}, MAE {test['mae']:.4f} on {test['n']:,} ratings"
        if test["n_fallback"]:
            line += f" ({test['n_fallback']} by baseline fallback: unseen user or item)"
    if metrics["epochs"]:
        line += f"; {metrics['epochs']} epochs, best {metrics['best_epoch']}"
        if metrics["full_train_epochs"]:
            line += f", then {metrics['full_train_epochs']} on all of train"
            line += f", {metrics['train_seconds']:.1f} s"
    else:
        line += f"; {metrics['train_seconds']:.1f} s"
    typer.echo(line)
    typer.echo(f"wrote {out}")


def _existing_store(store: str):
    """The feedback store ``store`` names, which must exist (a SQLite file ``neucf serve
    --store`` wrote, or a database that answers)."""
    from sqlalchemy.engine import make_url

    from ..feedback import FeedbackStore, StoreUnavailable, store_url

    url = make_url(store_url(store))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise UsageError(f"--store {store}: no such feedback store (the file neucf serve --store wrote)")
    try:
        return FeedbackStore(store)
    except StoreUnavailable as exc:
        raise UsageError(f"--store {store}: {exc}") from None


def _erased(store: str | None) -> set[str]:
    """The users erased in the feedback store ``store`` (none without one)."""
    if store is None:
        return set()
    feedback = _existing_store(store)
    try:
        return feedback.erased_users()
    finally:
        feedback.close()


def retrain(
    run_dir: RunDirArg,
    store: Annotated[str, typer.Option("--store", help="The feedback store the run's server kept (neucf serve --store).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write (outside RUN_DIR).")],
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (run-time: not saved with the model).")] = "auto",
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar and epoch lines (default: when stderr is a terminal).")] = None,
    force: ForceOpt = False,
):  # fmt: skip
    """Train a run again, with its settings, on its data plus the events its server stored, less
    erased users; judge both runs on each user's newest stored event. Example: neucf retrain
    runs/ml1m --store feedback.db --out runs/ml1m-2"""
    from .. import retraining

    check_output_dir(out, "run", (run_dir,), force)
    feedback = _existing_store(store)
    show = sys.stderr.isatty() if progress is None else progress
    fitted, metrics = retraining.retrain(run_dir, feedback, out, device=device, progress=show, force=force)
    judged, name = metrics["retrain"], fitted.name
    metric = "rmse" if fitted.task == "rating" else f"ndcg@{retraining.K}"
    new, live = judged["new"][metric], judged["live"][metric]
    if new is None:
        line = f"{name}: no user has 2 stored events, so no held-out event to judge the runs on"
    else:
        line = (f"{name}: {metric.upper()} on the newest stored event of {judged['held_out']:,} users: "
                f"new {new:.4f}, live {live:.4f}")  # fmt: skip
    typer.echo(f"{line}; from {judged['events']:,} stored events, {judged['seconds']:.1f} s")
    typer.echo(f"wrote {out}")


def rollback(
    run_dir: RunDirArg,
    store: Annotated[str, typer.Option("--store", help="The feedback store the servers share (neucf serve --store).")],
):  # fmt: skip
    """Make a run live: every server following the store (neucf serve --runs-dir) swaps to it
    between requests. Refused for a run trained before the store's newest erasure. Example:
    neucf rollback runs/retrained/run-20261206-101500-000000 --store feedback.db"""
    from ..retraining import rollback as make_live

    feedback = _existing_store(store)
    try:
        live = make_live(feedback, run_dir)
    finally:
        feedback.close()
    typer.echo(f"{live.path} is the live run of {feedback!r}")


def _model_for_task(model, config, params, seed, task):
    """``(name, params, seed, estimator, refusal)``: the model to train for ``task`` (see
    :func:`~neucf.cli.options.resolve_model`). Without a task it is checked as made for
    rating, unless the flags suit only a ranking model (``--relevant``): then it is the
    ranking model, and ``refusal`` the error to raise should the data hold ratings (on
    interactions lists are all there is to make); else ``refusal`` is None."""
    name, model_params, seed = resolve_model(model, config, params, seed, task or "rating")
    try:
        return name, model_params, seed, make_model(name, task=task, seed=seed, **model_params), None
    except UsageError as exc:
        if task is not None:
            raise
        rating_error = exc
    name, model_params, seed = resolve_model(model, config, params, seed, "ranking")
    try:
        estimator = make_model(name, task="ranking", seed=seed, **model_params)
    except UsageError:
        raise rating_error from None
    what = f"the {model} model" if model else "the default model for ratings"
    refusal = UsageError(f"{rating_error} ({what} predicts ratings; for lists pass --task ranking)")
    return name, model_params, seed, estimator, refusal


def evaluate(
    run_dir: RunDirArg,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Length of the top-k lists for ranking metrics.")] = 10,
    relevant: Annotated[float | None, typer.Option("--relevant", help="Test ratings >= this are relevant (default: the run's, else 3/4 up the scale, 4 on 1-5).")] = None,
    ranking: Annotated[bool | None, typer.Option("--ranking/--no-ranking", help="Ranking metrics of a rating run (default: when users x items <= 10^8; ranking runs: always).")] = None,
    protocol: Annotated[str, typer.Option("--protocol", help="full (rank every unseen item; the default) or sampled (the NCF paper's: each relevant item among 99 random others; overstates quality).")] = "full",
    negatives: Annotated[int | None, typer.Option("--negatives", min=1, help="With --protocol sampled: the random items each relevant item is ranked among (default 99).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the default output already is).")] = False,
):  # fmt: skip
    """RMSE and MAE of a run's model on the run's test part, and ranking metrics of its top-k lists
    (a ranking run: its lists only). Example: neucf evaluate runs/u1 --relevant 4"""
    if protocol not in ("full", "sampled"):
        raise UsageError(f"--protocol {protocol!r}: choose full or sampled")
    if negatives is not None and protocol != "sampled":
        raise UsageError("--negatives is for --protocol sampled (the full protocol ranks every unseen item)")
    fitted = read_run(run_dir)
    if relevant is not None:
        check_relevance(relevant, fitted.scale, fitted.implicit, "--relevant", "the run's")
    test = run_part(run_dir, "test", fitted)
    if test is None:
        raise DataError(f"{run_dir}: has no test.csv to evaluate on")
    out = {}
    if fitted.task == "rating":
        result = fitted.evaluate(test)
        out = {key: result[key] for key in ("rmse", "mae", "n", "n_fallback", "parts") if key in result}
    if fitted.task == "ranking" or wants_ranking(fitted, ranking):
        valid = run_part(run_dir, "valid", fitted)
        if protocol == "sampled":
            out["ranking"] = sampled_ranking(
                fitted, test, k=k, negatives=negatives or 99, relevant=relevant, exclude=valid
            )
        else:
            out["ranking"] = fitted.evaluate_ranking(test, k=k, relevant=relevant, exclude=valid)
    echo_json(out)


def echo_json(data) -> None:
    """Print ``data`` as one line of JSON, strictly: a figure that is not a finite number is null."""
    typer.echo(json.dumps(jsonable(data), allow_nan=False))


def _read_table(path: Path, flag: str, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV with a header naming ``columns`` (see :func:`neucf.datasets.read_table`)."""
    check_input(path, flag)
    return read_table(path, columns, optional)


ItemAttributesOpt = Annotated[
    Path | None,
    typer.Option(
        "--item-attributes",
        help="Items added since training (a file with the training attributes' columns): scored from them.",
    ),
]
UserAttributesOpt = Annotated[
    Path | None,
    typer.Option(
        "--user-attributes",
        help="Users who joined since training (a file with the training attributes' columns): scored from them.",
    ),
]
TypesOpt = Annotated[
    str | None,
    typer.Option("--attribute-types", help="Column kinds over the inferred ones: age=category,zip=category."),
]


def join_attributes(fitted, items: Path | None, users: Path | None, types: str | None) -> None:
    """Add the users and items of attribute files to a fitted model (ids it has stay as they are)."""
    from ..attributes import parse_types, read_attributes

    for path, flag, add in (
        (items, "--item-attributes", fitted.add_items),
        (users, "--user-attributes", fitted.add_users),
    ):
        if path is not None:
            check_input(path, flag)
            added = add(read_attributes(path, parse_types(types), name=str(path), partial=True))
            log.info("%s: %d new id(s) join the catalogue", path, len(added))


def predict(
    run_dir: RunDirArg,
    user: Annotated[str | None, typer.Option("--user", help="Raw user id (with --item).")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Raw item id (with --user).")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="CSV with the header user,item: predict every pair.")] = None,
    history: Annotated[Path | None, typer.Option("--history", help="CSV user,item[,rating]: users folded in from these (a ranking run's need no ratings).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="With --pairs: write user,item,prediction here (else stdout).")] = None,
    fallback: Annotated[bool, typer.Option("--fallback", help="Predict the bias baseline for a user or item known neither by ratings nor by attributes.")] = False,
    item_attributes: ItemAttributesOpt = None,
    user_attributes: UserAttributesOpt = None,
    attribute_types: TypesOpt = None,
):  # fmt: skip
    """Predicted ratings (a ranking run: scores) of one pair or of every pair of --pairs, --history
    folding users in; users and items without ratings are scored from their attributes.
    Example: neucf predict runs/u1 --user 196 --item 242"""
    if (pairs is None) == (user is None or item is None) or (pairs is not None and (user or item)):
        raise UsageError("give either --pairs FILE or both --user and --item")
    if out is not None:
        check_output_file(out, [pairs, history, run_dir / "model.pt", *recorded_inputs(run_dir)])
    frames = {}
    if pairs is not None:
        frames["pairs"] = _read_table(pairs, "--pairs", ("user", "item"))
    if history is not None:
        frames["history"] = _read_table(history, "--history", ("user", "item"), ("rating",))
    fitted = read_run(run_dir)
    join_attributes(fitted, item_attributes, user_attributes, attribute_types)
    fitted.unknown = "fallback" if fallback else "error"
    table = frames.get("pairs", pd.DataFrame({"user": [user], "item": [item]}))
    predictions = fitted.predict(table["user"].to_numpy(), table["item"].to_numpy(), history=frames.get("history"))
    if pairs is None:
        typer.echo(f"{float(predictions[0]):.4f}")
        return
    result = pd.DataFrame({"user": table["user"], "item": table["item"], "prediction": predictions})
    if out is None:
        typer.echo(result.to_csv(index=False, float_format="%.4f"), nl=False)
        return
    with atomic_write(out, "w", on_commit=work_done(f"{out} was written")) as handle:
        result.to_csv(handle, index=False, float_format="%.6g")
    typer.echo(f"wrote {out}: {len(result):,} predictions")


#: users whose lists ``recommend --all-users`` makes at once
BATCH_USERS = 256


def recommend(
    run_dir: RunDirArg,
    user: Annotated[str | None, typer.Option("--user", help="Raw user id.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items.")] = 10,
    history: Annotated[Path | None, typer.Option("--history", help="CSV user,item[,rating]: fold --user in from these (a ranking run's need no ratings).")] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Every user's top k (with --out), excluding their train and valid items.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="With --all-users: write user,item,rank,prediction here.")] = None,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Also rank items the user already rated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    candidates: Annotated[Path | None, typer.Option("--candidates", help="CSV with the header item: rank only these items (e.g. this week's arrivals).")] = None,
    item_attributes: ItemAttributesOpt = None,
    user_attributes: UserAttributesOpt = None,
    attribute_types: TypesOpt = None,
):  # fmt: skip
    """The top k items for a user (unseen by default), with scores and titles, or every user's;
    items and users known only by attributes are listed and served from them.
    Example: neucf recommend runs/u1 --user 196 -k 10"""
    pool = _read_table(candidates, "--candidates", ("item",))["item"].to_numpy() if candidates is not None else None
    if all_users:
        if user is not None or history is not None or out is None:
            raise UsageError("--all-users takes --out FILE (and -k), not --user or --history")
        check_output_file(out, [candidates, run_dir / "model.pt", *recorded_inputs(run_dir)])
        fitted = read_run(run_dir)
        join_attributes(fitted, item_attributes, user_attributes, attribute_types)
        batches = recommend_batches(fitted, k, run_part(run_dir, "valid", fitted), BATCH_USERS, pool)
        listed = 0
        # written batch by batch into the temporary file, renamed over --out once complete
        with atomic_write(out, "w", on_commit=work_done(f"{out} was written")) as handle:
            total = -(-int(fitted.known_users.sum()) // batch_rows(int(fitted.listable().sum()), BATCH_USERS))
            for n, tops in enumerate(tqdm(batches, total=total, unit="batch", leave=False, disable=None)):
                tops.to_csv(handle, index=False, header=n == 0, float_format="%.6g")
                listed += tops["user"].nunique()
            if not listed:
                handle.write("user,item,rank,prediction\n")
        typer.echo(f"wrote {out}: top {k} of {listed:,} users")
        return
    if user is None:
        raise UsageError("give --user U (with --history to fold a new user in), or --all-users --out FILE")
    frame = _read_table(history, "--history", ("user", "item"), ("rating",)) if history is not None else None
    fitted = read_run(run_dir)
    join_attributes(fitted, item_attributes, user_attributes, attribute_types)
    if frame is not None and not (frame["user"] == user).any():
        raise DataError(f"{history}: holds nothing of user {user!r}")
    top = fitted.recommend(user, k=k, exclude_seen=not include_seen, history=frame, candidates=pool)
    if as_json:
        typer.echo(top.to_json(orient="records", force_ascii=False))
        return
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        title = getattr(row, "title", None)
        typer.echo(f"{rank:>3}. {row.item}  {row.prediction:.2f}" + (f"  {title}" if isinstance(title, str) else ""))


def models():
    """The registered models: name, task, how each is fitted, whether it reads attributes
    (scores users and items without ratings from them), its parameters.
    Example: neucf models"""
    width = max(len(name) for name in model_names()) + 1
    for task in TASKS:
        for name in model_names(task):
            cls = model_class(name, task)
            params = ", ".join(cls.parameters()) or "no parameters"
            attributes = "attributes" if cls.uses_attributes else "-"
            typer.echo(f"{name:<{width}}{task:<8} {cls.fitted_by:<12} {attributes:<11} {params}")


def add_commands(app: typer.Typer) -> None:
    """Register train, evaluate, predict, recommend and models on ``app``."""
    app.command("train")(data_options(split_options()(model_options()(train))))
    app.command("retrain")(retrain)
    app.command("rollback")(rollback)
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
    app.command("recommend")(recommend)
    app.command("models")(models)
