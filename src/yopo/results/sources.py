"""Where runs are read from: the run folders under a runs folder, or a wandb project; both give
the same frame (`load_runs`)."""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from omegaconf import OmegaConf

from ..config import CONF_DIR, REPO_ROOT, register_resolvers
from ..identity import METRICS_FILE
from .schema import (WANDB_SUBDIR, ResultsError, _scalar, frame, is_complete, record_from_summary,
                     run_row)


PUBLISHED_DIR = REPO_ROOT / "results" / "published"  # committed records (results.published)


def configured_runs_dir() -> Path:
    """Where runs go by default: conf/paths (results/runs, or $YOPO_RUNS_DIR)."""
    register_resolvers()
    paths = OmegaConf.create({"paths": OmegaConf.load(CONF_DIR / "paths" / "default.yaml")})
    return Path(paths.paths.runs_dir)


# ---- the two sources ------------------------------------------------------------------------
_WANDB_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-([A-Za-z0-9]+)$")


def wandb_run_id(run_dir: str | os.PathLike) -> str | None:
    """The id of the latest wandb run fully logged into this run folder: yopo.tracking copies
    metrics.json into the wandb run's files/ as its last step, so a run whose logging failed
    half-way does not count."""
    folder = Path(run_dir) / WANDB_SUBDIR
    found = sorted((m.group(1), m.group(2)) for path in folder.glob("*run-*")
                   if (m := _WANDB_RUN_DIR.match(path.name))
                   and (path / "files" / METRICS_FILE).is_file())
    return found[-1][1] if found else None


def run_folders(runs_dir: str | os.PathLike) -> Iterator[Path]:
    """Folders under runs_dir holding a metrics.json, not descending into a run's own
    artefacts (pruned_model/, wandb/ - which keeps a copy of metrics.json) or temp folders."""
    for root, dirs, files in os.walk(runs_dir):
        if METRICS_FILE in files:
            dirs.clear()
            yield Path(root)
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith((".tmp-", ".")))


def _local_rows(runs_dir: Path) -> Iterator[dict[str, Any]]:
    if not runs_dir.is_dir():
        warnings.warn(f"runs folder {runs_dir} does not exist: no runs loaded", stacklevel=3)
        return
    for folder in run_folders(runs_dir):
        try:
            record = json.loads((folder / METRICS_FILE).read_text())
        except (OSError, ValueError) as err:
            warnings.warn(f"skipping {folder}: unreadable {METRICS_FILE} ({err})", stacklevel=3)
            continue
        if is_complete(record):
            yield run_row(record, str(folder), wandb_run_id(folder))


def _wandb_rows(project: str, api: Any) -> Iterator[dict[str, Any]]:
    if api is None:
        import wandb

        try:
            api = wandb.Api()
        except Exception as err:  # wandb raises several types when not logged in / offline
            raise ResultsError(f"cannot reach wandb ({type(err).__name__}: {err}); run "
                               "`wandb login` first, or load_runs(source='local')") from err
    seen: dict[str, dict[str, Any]] = {}
    # oldest first: when one run folder was logged twice, the later wandb run wins
    for run in api.runs(project, order="+created_at"):
        if getattr(run, "state", "finished") != "finished":
            continue
        record = record_from_summary(dict(run.summary_metrics))
        if is_complete(record):
            run_dir = _scalar(record.get("run_dir"))
            seen[run_dir or run.id] = run_row(record, run_dir, run.id)
    yield from seen.values()


def load_runs(source: str = "local", runs_dir: str | os.PathLike | None = None,
              project: str = "yopo", api: Any = None) -> pd.DataFrame:
    """All complete runs as a DataFrame (one row per run, columns COLUMNS + throughput_*).

    source="local": the run folders under runs_dir (default: configured_runs_dir()).
    source="wandb": the finished runs of the wandb project ("entity/project" or "project");
                    `api` defaults to wandb.Api() (needs `wandb login`).
    """
    if source == "local":
        rows = _local_rows(Path(runs_dir) if runs_dir else configured_runs_dir())
    elif source == "wandb":
        rows = _wandb_rows(project, api)
    else:
        raise ResultsError(f"unknown results source '{source}' (use 'local' or 'wandb')")
    return frame(rows)


def load_spectra_for(run_dir: str | os.PathLike):
    """The run's saved FFN1 spectra (yopo.spectra.Spectra), or None if it saved none."""
    from ..spectra import SPECTRA_FILE, load_spectra

    return load_spectra(run_dir) if (Path(run_dir) / SPECTRA_FILE).exists() else None


def layer_ks(runs: pd.DataFrame) -> pd.DataFrame:
    """KS(original, pruned) per layer of every run that saved spectra, long form:
    model, method, ratio_target, seed, policy_transferred, run_dir, layer, ks."""
    key = ["model", "method", "ratio_target", "seed", "policy_transferred", "run_dir"]
    rows = []
    for run in runs[key].to_dict("records"):
        spectra = load_spectra_for(run["run_dir"]) if run["run_dir"] else None
        if spectra is not None:
            rows += [{**run, "layer": layer, "ks": float(ks)}
                     for layer, ks in enumerate(spectra.ks.tolist())]
    return pd.DataFrame(rows, columns=key + ["layer", "ks"])



def experiment_csv(path: str | os.PathLike, **read_options: Any) -> pd.DataFrame:
    """A table an experiment script wrote (experiments/<name>/results/*.csv); empty when the
    file does not exist yet."""
    path = Path(path)
    return pd.read_csv(path, **read_options) if path.is_file() else pd.DataFrame()
