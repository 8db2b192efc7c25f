"""Published records: the runs behind the README's measured tables, committed, and the tables
generated from them.

`results/published/<model>/<method>/<run folder>/` holds each run's `metrics.json` (config,
identity, commit, machine, scores) and `example_scores.json` (every zero-shot example's score),
no checkpoints. The README's measured tables sit between markers

    <!-- published: <kind> <model> -->
    ...generated...
    <!-- /published -->

and are regenerated from those records by one command; a test fails when the README and the
records disagree, so a table edited by hand, or records replaced without regenerating, show.

    python -m yopo.results.published collect <runs folder> [--models m ...]  # copy records in
    python -m yopo.results.published readme                                 # regenerate README
    python -m yopo.results.published check                                  # exit 1 on drift
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from ..config import REPO_ROOT
from ..errors import YopoError
from ..identity import EXAMPLES_FILE, METRICS_FILE
from ..io import atomic_dir, atomic_file
from .paired import DENSE, paired_table
from .report import provenance
from .schema import frame
from .sources import PUBLISHED_DIR, load_runs
from .tables import REGIME_ORDER, regime_table

README = REPO_ROOT / "README.md"
RECORD_FILES = (METRICS_FILE, EXAMPLES_FILE)
MARKER = re.compile(r"(<!-- published: (\S+) (\S+) -->\n)(.*?)(<!-- /published -->)", re.S)


class PublishedError(YopoError):
    """A README block that names an unknown table, or a model without published records."""


# ---- collecting records ---------------------------------------------------------------------
def collect(runs_dir: str | Path, dest: str | Path = PUBLISHED_DIR,
            models: list[str] | None = None) -> list[Path]:
    """Copy every complete run's record files under `runs_dir` (of `models`, or all) into
    `dest`/<model>/<method>/<run folder>/, each folder replaced atomically."""
    runs = load_runs("local", runs_dir=runs_dir)
    if models:
        runs = runs[runs["model"].isin(models)]
    written = []
    for run in runs[["model", "method", "run_dir"]].to_dict("records"):
        source = Path(run["run_dir"])
        target = Path(dest) / run["model"] / run["method"] / source.name
        with atomic_dir(target) as tmp:
            for name in RECORD_FILES:
                if (source / name).is_file():
                    shutil.copy2(source / name, tmp / name)
        written.append(target)
    return written


def published_runs(dest: str | Path = PUBLISHED_DIR) -> pd.DataFrame:
    """The published records as the loader's frame (empty when there are none)."""
    dest = Path(dest)
    return load_runs("local", runs_dir=dest) if dest.is_dir() else frame([])


# ---- the README's tables --------------------------------------------------------------------
def _ppl(value: float) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _of_model(runs: pd.DataFrame, model: str) -> pd.DataFrame:
    of_model = runs[runs["model"] == model] if not runs.empty else runs
    if of_model.empty:
        raise PublishedError(f"no published records of model {model}: run "
                             "`python -m yopo.results.published collect <runs folder>` first")
    return of_model


def _source_line(runs: pd.DataFrame) -> str:
    hardware = ", ".join(sorted(runs["hardware"].dropna().unique())) or "machine not recorded"
    return (f"Generated from {len(runs)} published records (`results/published/`), "
            f"{provenance(runs)}; {hardware}.")


def methods_markdown(runs: pd.DataFrame, model: str) -> str:
    """Per evaluation protocol: one row per variant (sorted by data regime, then perplexity at
    the first ratio), per ratio `avg / ppl / params M (n)`: the five-task zero-shot average
    (%), WikiText-2 perplexity, parameters left and the number of runs (seeds)."""
    of_model = _of_model(runs, model)
    table = regime_table(of_model, [model], references=())
    blocks = [_source_line(of_model)]
    for protocol, at in table.groupby("protocol", sort=True):
        ratios = sorted(at["ratio"].unique())
        first = at[at["ratio"] == ratios[0]].set_index("variant")["ppl"]
        variants = sorted(at["variant"].unique(), key=lambda v: (
            REGIME_ORDER.get(at.loc[at["variant"] == v, "data regime"].iloc[0], 9),
            first.get(v, float("inf"))))
        dense = at.iloc[0]
        lines = [f"Protocol: {protocol}. Dense: {dense['dense avg']:.1f} / "
                 f"{_ppl(dense['dense ppl'])}.", "",
                 "| variant | data regime | " + " | ".join(
                     f"r = {r:g}: avg / ppl / params M (n)" for r in ratios) + " |",
                 "|---|---|" + "---|" * len(ratios)]
        for variant in variants:
            rows = at[at["variant"] == variant].set_index("ratio")
            cells = []
            for ratio in ratios:
                if ratio not in rows.index:
                    cells.append("not run")
                    continue
                r = rows.loc[ratio]
                cells.append(f"{r['avg']:.1f} / {_ppl(r['ppl'])} / {r['params M']:.1f} "
                             f"({r['n']})")
            regime = rows["data regime"].iloc[0]
            lines.append(f"| `{variant}` | {regime} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def paired_markdown(runs: pd.DataFrame, model: str,
                    references: tuple[str, ...] = (DENSE, "random", "activation")) -> str:
    """Per protocol and ratio: each variant's five-task average minus each reference's on the
    same examples (percentage points) with its paired bootstrap 95 % interval; bold where the
    interval excludes zero."""
    of_model = _of_model(runs, model)
    compared = {ref: paired_table(of_model, ref, [model]) for ref in references}
    keys = pd.concat([t[["protocol", "ratio"]] for t in compared.values()]).drop_duplicates()
    blocks = [_source_line(of_model)]
    for protocol, ratio in sorted(keys.itertuples(index=False)):
        lines = [f"Protocol: {protocol}; r = {ratio:g}.", "",
                 "| variant | " + " | ".join(f"avg - {ref} [95 % CI]" for ref in references)
                 + " |", "|---|" + "---|" * len(references)]
        cells: dict[str, dict[str, str]] = {}
        order: dict[str, float] = {}  # rows by their difference to the first reference
        for ref, table in compared.items():
            at = table[(table["protocol"] == protocol) & (table["ratio"] == ratio)]
            for row in at.to_dict("records"):
                text = f"{row['avg diff']:+.1f} [{row['avg low']:+.1f}, {row['avg high']:+.1f}]"
                cells.setdefault(row["variant"], {})[ref] = (f"**{text}**" if row["decisive"]
                                                             else text)
                if ref == references[0]:
                    order[row["variant"]] = row["avg diff"]
        for variant in sorted(cells, key=lambda v: (-order.get(v, float("-inf")), v)):
            lines.append(f"| `{variant}` | " + " | ".join(
                cells[variant].get(ref, "-") for ref in references) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


TABLES: dict[str, Callable[[pd.DataFrame, str], str]] = {
    "methods": methods_markdown, "paired": paired_markdown}


def render(text: str, runs: pd.DataFrame) -> str:
    """`text` (the README) with every published block regenerated from `runs`."""
    def block(match: re.Match) -> str:
        opening, kind, model, _, closing = match.groups()
        if kind not in TABLES:
            raise PublishedError(f"README block '{kind}' is unknown: use one of "
                                 + ", ".join(TABLES))
        return f"{opening}{TABLES[kind](runs, model)}\n{closing}"

    return MARKER.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yopo.results.published",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    take = sub.add_parser("collect", help="copy run records into results/published/")
    take.add_argument("runs_dir")
    take.add_argument("--models", nargs="*")
    sub.add_parser("readme", help="regenerate the README's published tables")
    sub.add_parser("check", help="exit 1 when the README's tables differ from the records")
    args = parser.parse_args(argv)
    if args.command == "collect":
        written = collect(args.runs_dir, models=args.models)
        print(f"{len(written)} run records copied into {PUBLISHED_DIR}")
        return 0
    text = README.read_text()
    rendered = render(text, published_runs())
    if args.command == "check":
        if rendered != text:
            print("README.md's published tables differ from results/published/: run "
                  "`python -m yopo.results.published readme`", file=sys.stderr)
            return 1
        return 0
    with atomic_file(README) as tmp:
        tmp.write_text(rendered)
    print(f"README.md: {len(MARKER.findall(text))} published tables regenerated")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except YopoError as err:
        sys.exit(f"error: {err}")
