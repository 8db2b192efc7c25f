"""The one reader of results, and the writer of the tables and figures made from them.

A run's record is its metrics.json (written last, so its presence marks a complete run). The
same record is logged to wandb as a flattened summary (`summary_from_record`), and
`load_runs` turns either source into the same DataFrame: one row per complete run, the fixed
columns of `COLUMNS` (NaN/None where a run lacks a key: eval=none, a method without a
policy...) plus one `throughput_*` column per numeric leaf of the throughput record.

Zero-shot accuracies stay fractions as lm-eval reports them; tables show percentages.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd
from omegaconf import OmegaConf

from . import paper
from .config import CONF_DIR, REPO_ROOT, register_resolvers
from .errors import YopoError
from .io import atomic_file
from .methods.calibration import data_regime

METRICS_FILE = "metrics.json"
WANDB_SUBDIR = "wandb"  # the wandb folder inside a run folder (yopo.tracking writes it)
DEFAULT_TABLES_DIR = REPO_ROOT / "results" / "tables"
DEFAULT_FIGURES_DIR = REPO_ROOT / "results" / "figures"
SUMMARY_SEP = "/"  # nested record keys <-> flat wandb summary keys ("zeroshot/piqa/value")

TASKS = paper.TASKS
#: Record keys copied as they are (scalars).
RECORD_COLUMNS = (
    "run_id", "model", "method", "ratio_target", "seed", "ratio_achieved", "ratio_semantics",
    "params_dense", "params_pruned", "params_removed_fraction", "ffn_width_dense",
    "ffn_width_pruned", "policy_source", "policy_train_ratio", "compression_seconds",
    "policy_train_seconds", "eval_seconds", "total_seconds", "ks_mean_dense_vs_pruned",
    "ppl_wikitext2", "peak_memory_bytes", "device", "git_commit", "calibration_source")


def _zeroshot_columns(prefix: str) -> list[str]:
    cols = [f"{prefix}{t}{suffix}" for t in TASKS for suffix in ("", "_stderr", "_metric")]
    return cols + [f"{prefix}avg", f"{prefix}avg_stderr"]


COLUMNS = (list(RECORD_COLUMNS) + ["data_regime", "policy_transferred", "rft", "rft_seconds"]
           + _zeroshot_columns("zs_")
           + ["dense_ppl_wikitext2"] + _zeroshot_columns("dense_zs_")
           + ["before_rft_ppl_wikitext2"] + _zeroshot_columns("before_rft_zs_")
           + ["eval_limit", "speedup", "ideal_speedup", "run_dir", "wandb_id"])
STRING_COLUMNS = {"run_id", "model", "method", "ratio_semantics", "policy_source", "rft", "device",
                  "git_commit", "run_dir", "wandb_id", "calibration_source", "data_regime",
                  *(c for c in COLUMNS if c.endswith("_metric"))}
INT_COLUMNS = {"seed", "params_dense", "params_pruned", "ffn_width_dense", "ffn_width_pruned",
               "eval_limit"}  # nullable integers (eval_limit stays float if a fraction)
BOOL_COLUMNS = {"policy_transferred"}


class ResultsError(YopoError):
    """Results that cannot be read (unreachable wandb project, bad source name)."""


# ---- record <-> wandb summary ---------------------------------------------------------------
def summary_from_record(record: Mapping[str, Any], run_dir: str | os.PathLike) -> dict[str, Any]:
    """The wandb summary of a run: the record's nested dicts flattened to "a/b" keys (lists stay
    lists), without the config (logged as the wandb config) and without None values (wandb
    drops them; a missing key reads back as None anyway), plus the run folder."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, inner in value.items():
                walk(f"{prefix}{SUMMARY_SEP}{key}" if prefix else str(key), inner)
        elif value is not None:
            flat[prefix] = value

    walk("", {k: v for k, v in record.items() if k != "config"})
    flat["run_dir"] = str(run_dir)
    return flat


def record_from_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of summary_from_record: "a/b" keys back to nested dicts. wandb's own keys
    ("_step", media entries) come along and are ignored by the row builder."""
    record: dict[str, Any] = {}
    for key, value in summary.items():
        *parents, leaf = str(key).split(SUMMARY_SEP)
        node = record
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a scalar already sits here: keep it, drop this
                break
            node = child
        else:
            node[leaf] = value
    return record


# ---- one row per run ------------------------------------------------------------------------
def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else None


def _zeroshot_values(zeroshot: Any, prefix: str) -> dict[str, Any]:
    zeroshot = zeroshot if isinstance(zeroshot, Mapping) else {}
    row: dict[str, Any] = {f"{prefix}avg": _scalar(zeroshot.get("avg")),
                           f"{prefix}avg_stderr": _scalar(zeroshot.get("avg_stderr"))}
    for task, entry in zeroshot.items():
        if isinstance(entry, Mapping):  # {"metric": ..., "value": ..., "stderr": ...}
            row[f"{prefix}{task}"] = _scalar(entry.get("value"))
            row[f"{prefix}{task}_stderr"] = _scalar(entry.get("stderr"))
            row[f"{prefix}{task}_metric"] = _scalar(entry.get("metric"))
    return row


def _numeric_leaves(value: Any, prefix: str) -> dict[str, Any]:
    """{prefix_key_subkey: number} for every numeric leaf of nested dicts; a list of dicts (one
    per setting) names its entries by their batch size ("bs8") or else by position."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        value = {f"bs{v['batch_size']}" if "batch_size" in v else str(i): v
                 for i, v in enumerate(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_numeric_leaves(inner, f"{prefix}_{key}"))
        return out
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {prefix: value} if is_number else {}


def run_row(record: Mapping[str, Any], run_dir: str | None, wandb_id: str | None
            ) -> dict[str, Any]:
    """The DataFrame row of one run record; every key of the record is optional."""
    row = {key: _scalar(record.get(key)) for key in RECORD_COLUMNS}
    row["policy_transferred"] = row["policy_source"] not in (None, "trained")
    # runs made before the regime was recorded: their calibration source says it
    row["data_regime"] = _scalar(record.get("data_regime")) or data_regime(
        row["calibration_source"])
    rft = record.get("rft") if isinstance(record.get("rft"), Mapping) else {}
    row["rft"] = _scalar(rft.get("setting"))  # None: no recovery fine-tuning
    row["rft_seconds"] = _scalar(rft.get("seconds"))
    zeroshot = record.get("zeroshot")
    row.update(_zeroshot_values(zeroshot, "zs_"))
    row["eval_limit"] = _scalar(zeroshot.get("limit")) if isinstance(zeroshot, Mapping) else None
    dense = record.get("dense") if isinstance(record.get("dense"), Mapping) else {}
    row.update(_zeroshot_values(dense.get("zeroshot"), "dense_zs_"))
    row["dense_ppl_wikitext2"] = _scalar(dense.get("ppl_wikitext2"))
    # the same run scored before recovery fine-tuning (pipeline: metrics.json "before_rft")
    before = record.get("before_rft") if isinstance(record.get("before_rft"), Mapping) else {}
    row.update(_zeroshot_values(before.get("zeroshot"), "before_rft_zs_"))
    row["before_rft_ppl_wikitext2"] = _scalar(before.get("ppl_wikitext2"))
    throughput = record.get("throughput") if isinstance(record.get("throughput"), Mapping) else {}
    # speedup / ideal_speedup: columns of their own when scalars; per phase or batch size
    # (dicts, lists) they become throughput_* columns like every other numeric leaf
    scalars = {k: _scalar(throughput.get(k)) for k in ("speedup", "ideal_speedup")}
    row.update(scalars)
    row.update(_numeric_leaves({k: v for k, v in throughput.items()
                                if scalars.get(k) is None}, "throughput"))
    if isinstance(record.get("peak_memory_bytes"), Mapping):  # per model, if eval reports so
        row.update(_numeric_leaves(record["peak_memory_bytes"], "peak_memory_bytes"))
    row["run_dir"], row["wandb_id"] = run_dir, wandb_id
    return row


def is_complete(record: Any) -> bool:
    return isinstance(record, Mapping) and all(
        record.get(key) is not None for key in ("model", "method", "ratio_target"))


def frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> the loader's DataFrame: COLUMNS first, then extra columns sorted, typed."""
    df = pd.DataFrame(list(rows))
    extra = sorted(c for c in df.columns if c not in COLUMNS)
    df = df.reindex(columns=COLUMNS + extra)
    for col in df.columns:
        if col in STRING_COLUMNS:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        elif col in BOOL_COLUMNS:
            df[col] = df[col].fillna(False).astype(bool)
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce")
            if col in INT_COLUMNS and (df[col].dropna() % 1 == 0).all():
                df[col] = df[col].astype("Int64")
    if df.empty:
        return df
    df = df.sort_values(["model", "method", "ratio_target", "seed", "run_dir"],
                        na_position="last", kind="stable")
    return df.reset_index(drop=True)


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
    from .spectra import SPECTRA_FILE, load_spectra

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


# ---- tables shared by notebooks -------------------------------------------------------------
def eval_sets(runs: pd.DataFrame) -> pd.Series:
    """Which examples each run was evaluated on, as a label: "full" or "first N per task".
    Tables group by it, because runs scored on different subsets must never be averaged."""
    limits = runs["eval_limit"].astype(float)
    return pd.Series(["full" if pd.isna(v) else f"first {v:g} per task" for v in limits],
                     index=runs.index, dtype=object)


def zeroshot_table(runs: pd.DataFrame, models: Iterable[str],
                   methods: Iterable[str] = ()) -> pd.DataFrame:
    """Model x ratio rows; per method (and RFT setting), the number of runs and each task's
    accuracy and the average in percent (mean over seeds); then the dense model and the
    paper's numbers. `methods` get their columns even before any run of theirs exists (the
    methods of the table's experiment grid, say), so a missing comparison shows as empty.

    Rows: every (ratio, evaluation subset) measured for the model (policies trained at that
    ratio; transferred policies are notebook 04's subject; runs without a zero-shot result are
    left out) plus every ratio the paper reports for it. Runs evaluated on different subsets
    (`eval limit`) are separate rows, never averaged together.
    """
    models = list(models)
    runs = runs[~runs["policy_transferred"] & runs["model"].isin(models) & runs["zs_avg"].notna()]
    # a method with recovery fine-tuning is a column group of its own: "prunenet+lora"
    runs = runs.assign(method=[m if rft is None else f"{m}+{rft}"
                               for m, rft in zip(runs["method"], runs["rft"])],
                       eval_sets=eval_sets(runs), ratio=runs["ratio_target"].round(6))
    methods = sorted(set(runs["method"].unique()) | set(methods))
    tasks = [*TASKS, "avg"]
    columns = ["model", "ratio", *(f"{m} {c}" for m in methods for c in ("n", *tasks)),
               "eval limit", "dense avg", "paper dense avg", "paper prunenet avg",
               "paper slicegpt avg", "paper prunenet+RFT avg"]
    rows = []
    for model in models:
        measured = runs[runs["model"] == model]
        groups = {(r, e): g for (r, e), g in measured.groupby(["ratio", "eval_sets"])}
        paper_ratios = ({r for (m, _, r) in paper.ZEROSHOT_AVG if m == model and r > 0}
                        | {r for (m, r) in paper.RECOVERY_AVG if m == model})
        for ratio in paper_ratios - {r for r, _ in groups}:
            groups[(ratio, "")] = measured.iloc[:0]  # the paper's numbers alone
        for (ratio, _), at_ratio in sorted(groups.items()):
            row: dict[str, Any] = {"model": model, "ratio": ratio,
                                   "eval limit": at_ratio["eval_limit"].astype(float).max(),
                                   "dense avg": 100 * at_ratio["dense_zs_avg"].mean(),
                                   "paper dense avg": paper.zeroshot(model, "dense", 0.0)["avg"],
                                   "paper prunenet+RFT avg": paper.recovery_avg(model, ratio, True)}
            for method in ("prunenet", "slicegpt"):
                row[f"paper {method} avg"] = paper.zeroshot(model, method, ratio)["avg"]
            for method in methods:
                of_method = at_ratio[at_ratio["method"] == method]
                row[f"{method} n"] = len(of_method)
                for task in tasks:
                    row[f"{method} {task}"] = 100 * of_method[f"zs_{task}"].mean()
            rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: "Int64" if c.endswith(" n") else float
                         for c in columns if c != "model"})


def zeroshot_runs(runs: pd.DataFrame, models: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per evaluated run and task (and the average), in percent: accuracy, stderr, the
    metric, the dense model's accuracy and the evaluation limit."""
    rows = []
    for run in runs.to_dict("records"):
        if models is not None and run["model"] not in set(models):
            continue
        for task in (*TASKS, "avg"):
            if pd.isna(run.get(f"zs_{task}")):
                continue
            rows.append({"model": run["model"], "method": run["method"], "rft": run["rft"],
                         "ratio": run["ratio_target"], "seed": run["seed"],
                         "transferred": run["policy_transferred"], "task": task,
                         "metric": run.get(f"zs_{task}_metric"),
                         "accuracy": 100 * run[f"zs_{task}"],
                         "stderr": 100 * run[f"zs_{task}_stderr"],
                         "dense accuracy": 100 * run[f"dense_zs_{task}"],
                         "limit": None if pd.isna(run["eval_limit"]) else float(run["eval_limit"]),
                         "run_dir": run["run_dir"]})
    return pd.DataFrame(rows, columns=["model", "method", "rft", "ratio", "seed", "transferred",
                                       "task", "metric", "accuracy", "stderr", "dense accuracy",
                                       "limit", "run_dir"])


def recovery_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Recovery fine-tuning: one row per model, method, ratio and RFT setting (mean over seeds)
    with the five-task average (percent) and WikiText-2 perplexity of the same runs before and
    after RFT, the gains, and the paper's PruneNet averages without and with RFT."""
    columns = ["model", "method", "ratio", "rft", "n", "avg before", "avg after", "avg gain",
               "ppl before", "ppl after", "ppl after / before", "dense avg", "rft_s",
               "eval limit", "paper avg without RFT", "paper avg with RFT"]
    tuned = runs[runs["rft"].notna() & ~runs["policy_transferred"]]
    rows = []
    for (model, method, ratio, rft), group in tuned.groupby(
            ["model", "method", "ratio_target", "rft"], sort=True):
        before, after = 100 * group["before_rft_zs_avg"].mean(), 100 * group["zs_avg"].mean()
        ppl_before, ppl_after = (group["before_rft_ppl_wikitext2"].mean(),
                                 group["ppl_wikitext2"].mean())
        on_paper = method == "prunenet"
        rows.append({"model": model, "method": method, "ratio": ratio, "rft": rft,
                     "n": len(group), "avg before": before, "avg after": after,
                     "avg gain": after - before, "ppl before": ppl_before,
                     "ppl after": ppl_after, "ppl after / before": ppl_after / ppl_before,
                     "dense avg": 100 * group["dense_zs_avg"].mean(),
                     "rft_s": group["rft_seconds"].mean(),
                     "eval limit": group["eval_limit"].astype(float).max(),
                     "paper avg without RFT": paper.recovery_avg(model, ratio, False)
                     if on_paper else None,
                     "paper avg with RFT": paper.recovery_avg(model, ratio, True)
                     if on_paper else None})
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: "Int64" if c == "n" else float for c in columns[4:]})


REGIME_ORDER = ("weights only", "self-generated text", "calibration text")


def regime_table(runs: pd.DataFrame, models: Iterable[str] | None = None,
                 reference: str = "activation") -> pd.DataFrame:
    """The data regimes side by side: one row per model, evaluation subset, ratio and method
    (mean over seeds), with its data regime, WikiText-2 perplexity and five-task average
    (percent), each also against the `reference` method's run at the same model, subset and
    ratio (`ppl / <reference>`, `avg - <reference>`), and the dense model's. Rows are sorted
    by regime, then perplexity. Runs with recovery fine-tuning or a transferred policy are left
    out (their own notebooks show them)."""
    columns = ["model", "eval_sets", "ratio", "method", "data regime", "n", "ppl",
               f"ppl / {reference}", "avg", f"avg - {reference}", "params M", "dense ppl",
               "dense avg"]
    runs = runs[runs["rft"].isna() & ~runs["policy_transferred"] & runs["ppl_wikitext2"].notna()]
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    runs = runs.assign(eval_sets=eval_sets(runs), ratio=runs["ratio_target"].round(6))
    rows = []
    for (model, subset, ratio), at in runs.groupby(["model", "eval_sets", "ratio"], sort=True):
        ref = at[at["method"] == reference]
        ref_ppl = ref["ppl_wikitext2"].mean() if len(ref) else float("nan")
        ref_avg = 100 * ref["zs_avg"].mean() if len(ref) else float("nan")
        block = []
        for method, group in at.groupby("method", sort=True):
            ppl, avg = group["ppl_wikitext2"].mean(), 100 * group["zs_avg"].mean()
            regime = group["data_regime"].iloc[0]
            block.append({"model": model, "eval_sets": subset, "ratio": ratio, "method": method,
                          "data regime": regime, "n": len(group), "ppl": ppl,
                          f"ppl / {reference}": ppl / ref_ppl, "avg": avg,
                          f"avg - {reference}": avg - ref_avg,
                          "params M": group["params_pruned"].mean() / 1e6,
                          "dense ppl": group["dense_ppl_wikitext2"].mean(),
                          "dense avg": 100 * group["dense_zs_avg"].mean()})
        order = {r: i for i, r in enumerate(REGIME_ORDER)}
        rows += sorted(block, key=lambda r: (order.get(r["data regime"], len(order)), r["ppl"]))
    table = pd.DataFrame(rows, columns=columns)
    for col in columns[6:]:  # pd.NA (a nullable column's missing value) -> NaN
        table[col] = table[col].astype(object).where(table[col].notna(), float("nan"))
    return table.astype({c: "Int64" if c == "n" else float for c in columns[5:]})


def speedup_columns(runs: pd.DataFrame) -> list[tuple[str, str | None]]:
    """(measured, ideal) speedup column pairs that hold values: `speedup` with `ideal_speedup`,
    and per phase `throughput_..._speedup_<phase>` with `throughput_ideal_speedup_<phase>`."""
    pairs = []
    for col in runs.columns:
        measured = col == "speedup" or (col.startswith("throughput_") and "ideal" not in col
                                        and re.search(r"_speedup(_|$)", col))
        if not measured or runs[col].isna().all():
            continue
        suffix = col.rsplit("speedup", 1)[1]
        ideal = "ideal_speedup" if col == "speedup" else f"throughput_ideal_speedup{suffix}"
        pairs.append((col, ideal if ideal in runs.columns and runs[ideal].notna().any()
                      else None))
    return pairs


# ---- writing tables and figures -------------------------------------------------------------
def output_dirs(tables_dir: str | os.PathLike | None = None,
                figures_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The notebooks' output folders (default results/tables and results/figures)."""
    return (Path(tables_dir) if tables_dir else DEFAULT_TABLES_DIR,
            Path(figures_dir) if figures_dir else DEFAULT_FIGURES_DIR)


def provenance(runs: pd.DataFrame) -> str:
    """Which code and which evaluation subsets the runs come from, said plainly when they are
    mixed: "from 2 commits (a1b2c3d4e5f6: 5 runs, 0f9e8d7c6b5a-dirty: 3 runs)"."""
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
    subsets = eval_sets(runs[runs["zs_avg"].notna()]).value_counts(sort=False).sort_index()
    if len(subsets) > 1:
        parts.append(f"evaluated on {len(subsets)} different subsets ("
                     + ", ".join(f"{e}: {n} runs" for e, n in subsets.items())
                     + "; tables never average across them)")
    return "; ".join(parts)


def describe_source(runs: pd.DataFrame, source: str, runs_dir: str | os.PathLike | None,
                    project: str) -> str:
    where = (f"run folders under {runs_dir or configured_runs_dir()}" if source == "local"
             else f"wandb project {project}")
    said = provenance(runs)
    return f"{len(runs)} complete runs from {where}" + (f", {said}" if said else "")


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
