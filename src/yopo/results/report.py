"""Writing tables and figures, and saying where their runs came from."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..config import REPO_ROOT
from ..io import atomic_file
from .sources import configured_runs_dir
from .tables import eval_protocol

DEFAULT_TABLES_DIR = REPO_ROOT / "results" / "tables"
DEFAULT_FIGURES_DIR = REPO_ROOT / "results" / "figures"


# ---- writing tables and figures -------------------------------------------------------------
def output_dirs(tables_dir: str | os.PathLike | None = None,
                figures_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The notebooks' output folders (default results/tables and results/figures)."""
    return (Path(tables_dir) if tables_dir else DEFAULT_TABLES_DIR,
            Path(figures_dir) if figures_dir else DEFAULT_FIGURES_DIR)


def provenance(runs: pd.DataFrame) -> str:
    """Which code, evaluation protocols and machines the runs come from, said plainly when
    they are mixed: "from 2 commits (a1b2c3d4e5f6: 5 runs, 0f9e8d7c6b5a-dirty: 3 runs)"."""
    if runs.empty:
        return ""
    parts = []
    commits = runs["git_commit"].fillna("unknown commit").map(
        lambda c: c if c == "unknown commit" else c[:12] + ("-dirty" if c.endswith("-dirty") else ""))
    counts = commits.value_counts(sort=False).sort_index()
    if len(counts) == 1:
        parts.append(f"all from commit {counts.index[0]}")
    else:
        parts.append(f"from {len(counts)} commits ("
                     + ", ".join(f"{c}: {n} runs" for c, n in counts.items()) + ")")
    protocols = eval_protocol(runs).value_counts(sort=False).sort_index()
    if len(protocols) > 1:
        parts.append(f"scored under {len(protocols)} evaluation protocols ("
                     + ", ".join(f"{e}: {n} runs" for e, n in protocols.items())
                     + "; tables never average across them)")
    hardware = runs["hardware"].dropna().value_counts(sort=False).sort_index()
    if len(hardware) > 1:
        parts.append(f"made on {len(hardware)} machines ("
                     + ", ".join(f"{h}: {n} runs" for h, n in hardware.items()) + ")")
    return "; ".join(parts)


def describe_source(runs: pd.DataFrame, source: str, runs_dir: str | os.PathLike | None,
                    project: str) -> str:
    where = (f"run folders under {runs_dir or configured_runs_dir()}" if source == "local"
             else f"wandb project {project}")
    said = provenance(runs)
    return f"{len(runs)} complete runs from {where}" + (f", {said}" if said else "")


def open_runs(source: str, runs_dir: str | os.PathLike | None, project: str,
              tables_dir: str | os.PathLike | None, figures_dir: str | os.PathLike | None
              ) -> tuple[pd.DataFrame, Path, Path, str]:
    """A notebook's first cell: (runs, tables_dir, figures_dir, the line saying where the runs
    came from, printed too). The parameters are the notebook's own (None = the defaults); with
    no runs_dir given and no run under the default one, the published records are read, so a
    newcomer sees every table without running anything."""
    from .sources import PUBLISHED_DIR, load_runs, run_folders

    default = configured_runs_dir()
    if (source == "local" and runs_dir is None and PUBLISHED_DIR.is_dir()
            and not any(run_folders(default))):  # os.walk of a missing folder yields nothing
        # nothing run here yet: show the committed records (results/published/) instead
        runs_dir = PUBLISHED_DIR
    runs = load_runs(source, runs_dir=runs_dir, project=project)
    tables, figures = output_dirs(tables_dir, figures_dir)
    loaded = describe_source(runs, source, runs_dir, project)
    print(loaded)
    return runs, tables, figures, loaded


def save_table(table: pd.DataFrame, tables_dir: str | os.PathLike, name: str,
               notes: list[str]) -> str:
    """A notebook's table: `name`.csv and `name`.md with the notes as bullets above it; prints
    and returns the notes."""
    note = "\n".join(f"- {n}" for n in notes)
    write_table(table, tables_dir, name, note)
    print(note)
    return note


def write_table(table: pd.DataFrame, tables_dir: str | os.PathLike, name: str,
                note: str = "") -> tuple[Path, Path]:
    """`name`.csv (full precision) and `name`.md (rounded, with `note` above), atomically."""
    tables_dir = Path(tables_dir)
    csv_path, md_path = tables_dir / f"{name}.csv", tables_dir / f"{name}.md"
    with atomic_file(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    shown = table.astype(object).where(table.notna(), None)
    body = shown.to_markdown(index=False, floatfmt=".4g", missingval="") if len(table.columns) \
        else "(no columns)"
    with atomic_file(md_path) as tmp:
        tmp.write_text((note.strip() + "\n\n" if note.strip() else "") + body + "\n")
    return csv_path, md_path


def write_figure(fig, figures_dir: str | os.PathLike, name: str) -> Path:
    path = Path(figures_dir) / f"{name}.png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path
