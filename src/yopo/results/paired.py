"""Paired comparisons: is variant A better than reference B here?

Two methods scored on the same examples differ far less in their difference than their two
standard errors suggest, because most of each score's noise is which examples were drawn. Each
run keeps every zero-shot example's score (`example_scores.json`: the pruned model's and the
dense model's). For a cell (model, protocol, ratio) the difference to a reference is taken
example by example (each side averaged over its seeds first), and its 95 % interval is a
paired bootstrap: resampling examples, the same draw for both sides, within each task
(scipy.stats.bootstrap, percentile method). The five-task average resamples every task
independently, since the tasks are independent samples.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from ..identity import EXAMPLES_FILE
from .schema import TASKS
from .tables import evaluated_runs

DENSE = "dense"  # the reference that is the unpruned model (every run carries its scores)
CONFIDENCE = 0.95
N_RESAMPLES = 2000  # the interval's ends move by ~0.1 point between seeds at 200 per task


def read_examples(run_dir: str | Path | None) -> dict[str, Any] | None:
    """A run's per-example scores ({pruned, dense, before_rft}), or None if it kept none."""
    path = Path(run_dir) / EXAMPLES_FILE if run_dir else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def paired_interval(differences: list[np.ndarray], n_resamples: int = N_RESAMPLES,
                    seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of the mean over tasks of each task's mean difference, with its
    percentile bootstrap interval; each array holds one task's per-example differences
    (already paired), resampled independently of the others."""
    differences = [np.asarray(d, dtype=float) for d in differences]
    estimate = float(np.mean([d.mean() for d in differences]))
    if all(np.ptp(d) == 0 for d in differences):  # nothing to resample: the interval is a point
        return estimate, estimate, estimate

    def mean_of_task_means(*samples, axis=-1):
        return np.mean([s.mean(axis=axis) for s in samples], axis=0)

    result = bootstrap(tuple(differences), mean_of_task_means, n_resamples=n_resamples,
                       vectorized=True, confidence_level=CONFIDENCE, method="percentile",
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return estimate, float(low), float(high)


def _mean_over_runs(sections: list[dict[str, Any]], task: str) -> tuple[list[int], str, np.ndarray]:
    """(doc ids, docs hash, per-example score averaged over the runs) of one task; the runs
    must have scored the same examples."""
    first = sections[0][task]
    for other in sections[1:]:
        if other[task]["docs_sha256"] != first["docs_sha256"]:
            raise ValueError(f"{task}: runs of one cell scored different examples")
    values = np.mean([np.asarray(s[task]["value"], dtype=float) for s in sections], axis=0)
    return first["doc_id"], first["docs_sha256"], values


def paired_table(runs: pd.DataFrame, reference: str = DENSE, models: Iterable[str] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """For each model, zero-shot protocol, ratio and variant: its accuracy minus the
    reference's on the same examples, in percentage points, per task and for the five-task
    average, with the paired bootstrap 95 % interval (`<task> low`, `<task> high`) and whether
    the average's interval excludes zero (`decisive`). `reference` is a variant label of the
    frame (`random`, `activation`) or "dense" (the unpruned model, scored on the same examples
    in every run). Runs without per-example scores (made before they were kept) are left out;
    `n` and `n reference` count the runs on each side."""
    runs = evaluated_runs(runs)
    runs = runs[runs["zs_protocol"].notna() & runs["rft"].isna() & ~runs["policy_transferred"]]
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    runs = runs.assign(ratio=runs["ratio_target"].round(6))
    examples = {d: read_examples(d) for d in runs["run_dir"]}
    runs = runs[runs["run_dir"].map(lambda d: examples[d] is not None).astype(bool)]
    columns = ["model", "protocol", "ratio", "variant", "reference", "n", "n reference",
               *(f"{t} {kind}" for t in (*TASKS, "avg") for kind in ("diff", "low", "high")),
               "decisive"]
    rows = []
    for (model, protocol, ratio), cell in runs.groupby(["model", "zs_protocol", "ratio"]):
        if reference == DENSE:
            ref_sections = [examples[cell["run_dir"].iloc[0]]["dense"]]
        else:
            ref_runs = cell[cell["variant"] == reference]
            ref_sections = [examples[d]["pruned"] for d in ref_runs["run_dir"]]
        if not ref_sections or ref_sections[0] is None:
            continue
        for variant, group in cell.groupby("variant"):
            if variant == reference:
                continue
            sections = [examples[d]["pruned"] for d in group["run_dir"]]
            tasks = [t for t in TASKS if t in sections[0] and t in ref_sections[0]]
            row: dict[str, Any] = {"model": model, "protocol": protocol, "ratio": ratio,
                                   "variant": variant, "reference": reference,
                                   "n": len(sections),
                                   "n reference": 1 if reference == DENSE else len(ref_sections)}
            try:
                differences = []
                for task in tasks:
                    ids, docs, values = _mean_over_runs(sections, task)
                    ref_ids, ref_docs, ref_values = _mean_over_runs(ref_sections, task)
                    if (ids, docs) != (ref_ids, ref_docs):
                        raise ValueError(f"{task}: {variant} and {reference} scored different "
                                         "examples")
                    differences.append(100 * (values - ref_values))
            except ValueError as err:
                warnings.warn(f"{model} at ratio {ratio:g}: not paired ({err})", stacklevel=2)
                continue
            for task, diff in zip(tasks, differences):
                row.update(zip((f"{task} diff", f"{task} low", f"{task} high"),
                               paired_interval([diff], n_resamples, seed)))
            if len(tasks) == len(TASKS):  # the average is over the five tasks or not shown
                row.update(zip(("avg diff", "avg low", "avg high"),
                               paired_interval(differences, n_resamples, seed)))
                row["decisive"] = not row["avg low"] <= 0 <= row["avg high"]
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)
