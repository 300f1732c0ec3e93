"""Pages made at build time (run by mkdocs-gen-files): the command-line reference, from the
typer app itself, and the benchmark tables and the measurements behind the defaults, from
``benchmarks/results/*.json``, so that none can drift from what it documents. Each table says
the command that made it, the machine and the date."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


# ---- the command line ----------------------------------------------------------------------------
def cli_reference() -> str:
    import typer

    from neucf.cli import build_app

    root = typer.main.get_command(build_app())
    sections = [
        "# Command line",
        "",
        "Generated from the `neucf` command itself (the text of `--help` of every command); global "
        "options come before the command: `neucf [-v|-q] [--threads N] COMMAND ...`.",
        "",
    ]

    def walk(command, path: list[str], parent) -> None:
        ctx = command.context_class(
            command, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100
        )
        sections.extend([f"## `{' '.join(path)}`", "", "```text", command.get_help(ctx).rstrip(), "```", ""])
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name], ctx)

    walk(root, ["neucf"], None)
    return "\n".join(sections) + "\n"


# ---- the benchmarks --------------------------------------------------------------------------------
def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def when(record: dict, name: str) -> str:
    """The date a result was measured: as recorded, else the date its file was committed."""
    if record.get("date"):
        return record["date"]
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%ad", "--date=short", "--", str(RESULTS / name)],
                              cwd=ROOT, capture_output=True, text=True, timeout=10)  # fmt: skip
        return done.stdout.strip() or "not recorded"
    except (OSError, subprocess.SubprocessError):
        return "not recorded"


def provenance(record: dict, name: str) -> str:
    return (
        f"`{record.get('command', 'not recorded')}` — machine: {record.get('machine', 'not recorded')}; "
        f"date: {when(record, name)}; file: `benchmarks/results/{name}`"
    )


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def quality_section(name: str = "quality.json", heading: str = "Rating accuracy", intro: str = "") -> list[str]:
    record = load(name)
    if record is None:
        return []
    models = list(dict.fromkeys(r["model"] for r in record["rows"]))
    datasets = list(dict.fromkeys(r["dataset"] for r in record["rows"]))
    by = {(r["dataset"], r["model"]): r for r in record["rows"]}
    lines = [
        f"## {heading}",
        "",
        intro + "Test RMSE (train seconds) of each model on each dataset; the best per row in bold.",
        "",
        "| data | " + " | ".join(models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for d in datasets:
        values = {m: by[(d, m)]["rmse"] for m in models if (d, m) in by}
        best = min(values.values())
        cells = []
        for m in models:
            if (d, m) not in by:
                cells.append("")
                continue
            text = f"{values[m]:.4f} ({by[(d, m)]['train_seconds']:.1f} s)"
            cells.append(f"**{text}**" if values[m] == best else text)
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return [*lines, "", provenance(record, name), ""]


def attributes_section() -> list[str]:
    return quality_section(
        "quality_attributes.json", "Rating accuracy with attributes",
        "The same protocols, each model fitted without and with the MovieLens release's attributes "
        "(`MODEL+attributes`: genres and year, age, gender, occupation, zip code's first digit). ",
    )  # fmt: skip


def topn_section() -> list[str]:
    record = load("topn.json")
    if record is None:
        return []
    results = record["results"]
    names = list(results)
    rows = list(dict.fromkeys(r for n in names for r in results[n] if isinstance(results[n][r], dict)))
    lines = [
        "## Top-N lists",
        "",
        "NDCG@10 (fit seconds) of each list maker: neucf's models choose their settings on the validation "
        "part; the peers (EASE, `implicit`'s ALS and BPR) get their best over fixed grids on the test part.",
        "",
        "| lists from | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for row in rows:
        cells = [
            f"{results[n][row]['ndcg']:.4f} ({results[n][row]['seconds']:.1f} s)" if row in results[n] else ""
            for n in names
        ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    summary = record.get("ml100k_mean_ndcg") or {}
    if summary:
        lines += ["", "ml-100k u1..u5, mean NDCG@10:", "", "| lists from | mean |", "|---|---:|"]
        lines += [f"| {row} | {value:.4f} |" for row, value in summary.items()]
    speed = record.get("ml1m_speed")
    if speed:
        lines += [
            "",
            "ML-1M (RecBole's protocol), timings:",
            "",
            "| what | measured |",
            "|---|---:|",
            f"| `neucf train --task ranking`, start to exit | {speed['train_command_seconds']:.1f} s "
            f"(test NDCG@10 {speed['train_command_ndcg']:.4f}) |",
            f"| every user's top 10 (`neucf recommend --all-users`), start to exit | "
            f"{speed['all_users_top10_seconds']:.1f} s |",
            f"| fold-in and top 10 of a new user with 20 interactions, median | "
            f"{speed['fold_in_top10_ms_median']:.1f} ms |",
        ]
    new = record.get("new_users_u1")
    if new:
        lines += [
            "",
            f"New users (ml-100k u1, {new['users']} users held out of training, half their ratings posted to "
            f"`POST /recommendations`, NDCG@10 on the other half): `--task ranking` {new['neucf_ranking_ndcg']:.4f}, "
            f"EASE folded in as `x_u B` (its best lambda) {new['ease_fold_in_best_ndcg']:.4f}.",
        ]
    return [*lines, "", provenance(record, "topn.json"), ""]


def scale_topn_section() -> list[str]:
    records = [(name, load(name)) for name in ("scale_topn.json", "scale_topn_16m.json")]
    records = [(name, record) for name, record in records if record is not None]
    if not records:
        return []
    lines = [
        "## Lists at any catalogue size",
        "",
        "Generated interactions (taste groups, Zipf popularity), `user-ratio` split, NDCG@10 on 10,000 test "
        "users; neucf's default (the hybrid, which picks its path by the data's size) beside `implicit`'s ALS "
        "and SANSA; peak memory of the process that fitted it; every user's top 10.",
        "",
    ]
    for name, record in records:
        lines += [
            "| set | users | items | lists from | NDCG@10 | fit s | peak GB | all-users top 10 s |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for set_name, rows in record["results"].items():
            size = record["sets"][set_name]
            head = f"| {set_name} | {size['users']:,} | {size['items']:,} |"
            for row, r in rows.items():
                if "error" in r:
                    lines.append(f"{head} {row} | {r['error']} | | | |")
                    continue
                every = "not timed" if r["all_users_seconds"] is None else f"{r['all_users_seconds']:.0f}"
                lines.append(
                    f"{head} {row} | {r['ndcg']:.4f} | {r['fit_seconds']:.0f} | {r['peak_gb']:.1f} | {every} |"
                )
        lines += ["", provenance(record, name), ""]
    return lines


def scale_section() -> list[str]:
    record = load("scale.json")
    if record is None:
        return []
    lines = [
        "## Training cost against data size",
        "",
        "NeuMF (defaults): seconds per epoch, per epoch and million ratings, to early stop; peak memory; "
        "test RMSE; Surprise's tuned SVD fit on the same split.",
        "",
        "| data | train ratings | s / epoch | s / epoch / M | epochs | to early stop | peak GB | RMSE | SVD fit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        stop = "" if r.get("capped") else f"{r['train_seconds']:.1f} s"
        svd = "" if r.get("svd_seconds") is None else f"{r['svd_seconds']:.1f} s"
        lines.append(
            f"| {r['dataset']} | {r['train_ratings']:,} | {r['seconds_per_epoch']:.2f} | "
            f"{r['seconds_per_epoch_per_million']:.2f} | {r['epochs']} | {stop} | {fmt(r.get('peak_gb'), 2)} | "
            f"{fmt(r.get('rmse'))} | {svd} |"
        )
    return [*lines, "", provenance(record, "scale.json"), ""]


def serve_section() -> list[str]:
    lines = []
    for name, label in (("serve.json", "one worker"), ("serve_workers2.json", "two workers")):
        record = load(name)
        if record is None:
            continue
        if not lines:
            lines = [
                "## Serving",
                "",
                "Load test of `neucf serve` on an ML-1M NeuMF run (the client on the same cores): requests a "
                "second and latency percentiles.",
                "",
                "| server | concurrency | endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |",
                "|---|---:|---|---:|---:|---:|---:|---:|",
            ]
        for r in record["rows"]:
            lines.append(
                f"| {label} | {r['concurrency']} | {r['endpoint']} | {r['per_second']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
            )
        lines.append("")
        lines.append(f"{label}: {provenance(record, name)}")
        lines.append("")
    return lines


def service_section() -> list[str]:
    record = load("service.json")
    if record is None:
        return []
    rows, met = record["rows"], record["targets_met"]
    i, f = rows["ingest"], rows["foldin"]
    each = ", ".join(f"{r['list_p99_ms']:.1f}" for r in i["runs"])
    lines = [
        "## A server that remembers, and learns",
        "",
        f"`neucf serve --store` on an ML-1M {record['model']} run, one worker unless said (the clients on the "
        "same cores): feedback posted in batches of 100 while 8 clients ask for random users' top-10 lists; a "
        "user known only to the store with 200 stored ratings; workers and servers taking events at once.",
        "",
        "| measure | figure | target | met |",
        "|---|---|---|---|",
        f"| ingestion while serving (median of {len(i['runs'])} runs) | {i['events_per_second']:,.0f} events/s | "
        f">= 2,000 | {'yes' if met['ingest'] else 'no'} |",
        f"| lists during it: p50 / p99 (each run's p99: {each}) | {i['list_p50_ms']:.1f} / {i['list_p99_ms']:.1f} ms "
        f"| p99 <= 50 ms | {'yes' if met['list_p99'] else 'no'} |",
        f"| fold-in from 200 stored events: median | {f['median_ms']:.1f} ms | <= 20 ms | "
        f"{'yes' if met['foldin'] else 'no'} |",
    ]
    for name, label in (
        ("two-workers", "two workers, one SQLite file"),
        ("two-servers", "two servers, one PostgreSQL"),
    ):
        if name in rows:
            c = rows[name]
            lines.append(
                f"| {label}: events stored of posted at once | {c['stored']:,} of {c['posted']:,} "
                f"({c['events_per_second']:,.0f} events/s) | all | {'yes' if met[name] else 'no'} |"
            )
    if "retrain" in rows:
        r = rows["retrain"]
        lines.append(
            f"| `neucf retrain` on {r['events']:,} stored events against `neucf train` | {r['retrain_seconds']:.1f} s "
            f"against {r['train_seconds']:.1f} s ({r['ratio']:.2f}x) | <= 1.5x | {'yes' if met['retrain'] else 'no'} |"
        )
    return [*lines, "", provenance(record, "service.json"), ""]


def learning_section() -> list[str]:
    record = load("learning.json")
    if record is None:
        return []
    rows, met = record["rows"], record["targets_met"]
    w = rows["swap"]
    each = ", ".join(f"{r['p99_ms_during']:.1f}" for r in w["runs"])
    lines = [
        "## A server that learns",
        "",
        f"A swap under load: `neucf serve --store --runs-dir` on an ML-1M run, 8 clients asking for known users' "
        f"top-10 lists ({w['requests']:,.0f} requests), `neucf rollback` to another ML-1M run after one second; "
        f"medians of {len(w['runs'])} runs.",
        "",
        "| measure | figure | target | met |",
        "|---|---|---|---|",
        f"| failed requests | {w['failed']:.0f} | 0 | {'yes' if met['swap_failed'] else 'no'} |",
        f"| p99 from the rollback to a second after the swap (each run: {each}) | {w['p99_ms_during']:.1f} ms | "
        f"<= 100 ms | {'yes' if met['swap_p99'] else 'no'} |",
        f"| rollback to the swap | {w['swap_seconds']:.2f} s | | |",
        f"| all requests: p50 / p99 | {w['p50_ms']:.1f} / {w['p99_ms']:.1f} ms | | |",
    ]
    if "first_list" in w:
        f = w["first_list"]
        lines.append(f"| the first top-10 after a run is loaded / those after it | {f['first_ms']:.1f} / "
                     f"{f['later_ms']:.1f} ms | | |")  # fmt: skip
    if "replay" in rows:
        r = rows["replay"]
        lines += [
            "",
            f"A replay: the last 10% of each ml-100k user's ratings ({r['held_back']:,}) posted in time order to a "
            f"server of a {r['model']} run trained on the rest, each after asking for the user's top-10 and "
            "predicting the rating; one server never retrains, the other retrains every 1,000 events. Runs "
            f"trained with {len(r['replays'])} seeds.",
            "",
            "| run seed | server | next-rating RMSE | online hit rate | retrainings (went live) |",
            "|---|---|---|---|---|",
        ]
        r_seed = r["replays"][0]["seed"]
        for x in r["replays"]:
            went = sum(y["status"] == "live" for y in x["retraining"]["runs"])
            lines += [
                f"| {x['seed']} | no retraining | {x['static']['rmse']:.4f} | {x['static']['hit_rate']:.4f} | |",
                f"| {x['seed']} | retraining | {x['retraining']['rmse']:.4f} | {x['retraining']['hit_rate']:.4f} | "
                f"{len(x['retraining']['runs'])} ({went}) |",
            ]
        m = r["mean"]
        lines += [
            f"| mean | no retraining | {m['static']['rmse']:.4f} | {m['static']['hit_rate']:.4f} | |",
            f"| mean | retraining | {m['retraining']['rmse']:.4f} | {m['retraining']['hit_rate']:.4f} | |",
        ]
        ranked = rows.get("replay_ranking")
        if ranked:
            went = sum(y["status"] == "live" for y in ranked["retraining"]["runs"])
            lines += [
                f"| {r_seed} | no retraining, {ranked['model']} ranking run | | {ranked['static']['hit_rate']:.4f} | |",
                f"| {r_seed} | retraining, {ranked['model']} ranking run | | {ranked['retraining']['hit_rate']:.4f} | "
                f"{len(ranked['retraining']['runs'])} ({went}) |",
            ]
        lines += [
            "",
            "The means are of the rating runs; the ranking run's predictions are scores, so it has no RMSE.",
        ]
        if "sessions" in r:
            q = r["sessions"]
            lines += [
                "",
                f"What a retraining can add: {q['users_within_one_interval']:.1%} of the users have all their "
                f"held-back ratings between two retrainings (spanning a median {q['median_user_span_minutes']:.1f} "
                f"minutes), and {q['events_after_a_retraining_with_their_users']:.1%} of the events come after a "
                "retraining that saw some of their user's. For the others a retraining knows nothing of the user "
                "that the static server, which folds each event in at once, does not: it can differ only by what "
                "other users' ratings teach about the items.",
            ]
        lines += [
            "",
            f"Targets (the retraining server better in every replay of a rating run): on RMSE: "
            f"{'met' if met['replay_rmse'] else 'not met'}; on the hit rate: "
            f"{'met' if met['replay_hit_rate'] else 'not met'}.",
        ]
    return [*lines, "", provenance(record, "learning.json"), ""]


def foldin_section() -> list[str]:
    record = load("foldin.json")
    if record is None:
        return []
    lines = [
        "## New users and items (fold-in) for ratings",
        "",
        "Users removed from ml-100k, folded in from half of their ratings; RMSE on the other half, against "
        "the same model trained with that half.",
        "",
        "| model | folded-in RMSE | trained-with RMSE | gap |",
        "|---|---:|---:|---:|",
    ]
    for r in record["quality"]:
        gap = r["rmse_folded_in"] - r["rmse_trained_with_history"]
        lines.append(f"| {r['model']} | {r['rmse_folded_in']:.4f} | {r['rmse_trained_with_history']:.4f} | {gap:.4f} |")
    if record.get("items"):
        lines += [
            "",
            "New items: a tenth of the items with 40 ratings or more removed from training (NeuMF), each "
            "folded in from k of its ratings; RMSE on its other ratings, by the weight of the network's term: "
            "0 (the baseline `mean + b_u + b_i`), neucf's `k / (k + 20)`, 1 (unshrunk).",
            "",
            "| data | k | rated | baseline | neucf | unshrunk |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for x in record["items"]:
            for r in x["rows"]:
                lines.append(f"| {x['data']} | {r['k']} | {r['target_ratings']:,} | {r['rmse_baseline']:.4f} | "
                             f"{r['rmse_neucf']:.4f} | {r['rmse_unshrunk']:.4f} |")  # fmt: skip
    return [*lines, "", provenance(record, "foldin.json"), ""]


def cold_section() -> list[str]:
    record = load("cold.json")
    if record is None:
        return []
    parts = ("warm", "new_items", "new_users", "both_new")
    lines = [
        "## Cold start: new users and new items",
        "",
        "The cold split (`--split cold`): a fifth of the users and of the items are new, known only by their "
        "attributes (genres and year; gender, age, occupation, zip code's first digit). RMSE per test part, "
        "fit seconds, and NDCG@10 ranking only the new items for the old users who liked one.",
        "",
    ]
    for dataset, result in record["datasets"].items():
        if not result:
            continue
        sizes = ", ".join(f"{k} {v:,}" for k, v in result["parts"].items())
        lines += [f"**{dataset}** ({result['train']:,} training ratings; test rows: {sizes})", "",
                  "| method | " + " | ".join(parts) + " | fit s |", "|---|" + "---:|" * (len(parts) + 1)]  # fmt: skip
        lines += [f"| {r['method']} | " + " | ".join(fmt(r[p]) for p in parts) + f" | {r['fit_seconds']:.1f} |"
                  for r in result["rmse"]]  # fmt: skip
        lists = result["new_items"]
        lines += ["", f"NDCG@10 ranking only the {lists['candidates']:,} new items for {lists['users']:,} old users:",
                  "", "| method | NDCG@10 |", "|---|---:|"]  # fmt: skip
        lines += [f"| {r['method']} | {fmt(r['ndcg_new_items']) or 'cannot rank them'} |" for r in lists["rows"]]
        latency = result.get("latency") or {}
        if latency:
            lines += ["", f"A top-10 list from NeuMF with attributes, median: {latency['new_user_ms']:.1f} ms for a new "
                      f"user known only by attributes, {latency['new_items_ms']:.1f} ms for an old user over the new items."]  # fmt: skip
        lines.append("")
    return [*lines, provenance(record, "cold.json"), ""]


def benchmarks_page() -> str:
    parts = [
        "# Benchmarks",
        "",
        "Every figure on this page is read from a results file under `benchmarks/results/` when the site "
        "is built; each table says the command that made it, the machine and the date. The scripts under "
        "`benchmarks/` print the same tables and write those files. Timings were taken on the machine named; "
        "the machines differ between dates, so compare only figures of one table.",
        "",
    ]
    sections = (quality_section, attributes_section, topn_section, scale_topn_section, cold_section, scale_section,
                foldin_section, serve_section, service_section, learning_section)  # fmt: skip
    for section in sections:
        parts.extend(section())
    return "\n".join(parts) + "\n"


def design_page() -> str:
    """Why the defaults are what they are, from ``benchmarks/results/decisions.json``: each
    section's measurements with how and when they were made."""
    record = load("decisions.json") or {"sections": []}
    parts = [
        "# Why the defaults are what they are",
        "",
        "The measurements behind neucf's defaults, read from `benchmarks/results/decisions.json`; each "
        "section says how and when they were made (on the project's 2-core CPU machine, while the choice "
        "was made). The released code's figures are on the [benchmarks page](benchmarks.md); what changed "
        'when is in the [changelog](changelog.md). Test RMSE unless said otherwise; "u1" is ml-100k\'s u1 '
        'fold, "ML-1M" a seeded random 90/10 split of ML-1M.',
        "",
    ]
    for section in record["sections"]:
        parts += [f"## {section['title']}", "", *[f"- {item}" for item in section["items"]], ""]
        parts += [f"*Measured: {section['how']}; {section['date']}.*", ""]
    return "\n".join(parts) + "\n"


with mkdocs_gen_files.open("design.md", "w") as page:
    page.write(design_page())
with mkdocs_gen_files.open("reference/cli.md", "w") as page:
    page.write(cli_reference())
with mkdocs_gen_files.open("benchmarks.md", "w") as page:
    page.write(benchmarks_page())
with mkdocs_gen_files.open("changelog.md", "w") as page:
    page.write((ROOT / "CHANGELOG.md").read_text())
