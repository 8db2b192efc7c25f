"""The tables the notebooks show: pure functions of the runs frame. Runs scored on different
evaluation subsets are never averaged together (`eval_sets`)."""
from __future__ import annotations

import re
from typing import Any, Iterable

import pandas as pd

from .. import paper
from .schema import TASKS


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


REGIME_ORDER = {"weights only": 0, "self-generated text": 1, "calibration text": 2}  # row order


def regime_table(runs: pd.DataFrame, models: Iterable[str] | None = None,
                 references: Iterable[str] = ("activation",)) -> pd.DataFrame:
    """The data regimes side by side: one row per model, evaluation subset, ratio and method
    (mean over seeds), with its data regime, WikiText-2 perplexity and five-task average
    (percent), each also against every `references` method's run at the same model, subset
    and ratio (`ppl / <reference>`, `avg - <reference>`), the parameters left, the ratio
    achieved and the dense model's scores. Rows are sorted by regime, then perplexity. Runs
    with recovery fine-tuning or a transferred policy are left out (their own notebooks show
    them)."""
    references = list(references)
    compared = [f"{kind} {r}" for r in references for kind in ("ppl /", "avg -")]
    columns = ["model", "eval_sets", "ratio", "method", "data regime", "n", "ppl", "avg",
               *compared, "params M", "ratio achieved", "dense ppl", "dense avg"]
    runs = runs[runs["rft"].isna() & ~runs["policy_transferred"] & runs["ppl_wikitext2"].notna()]
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    runs = runs.assign(eval_sets=eval_sets(runs), ratio=runs["ratio_target"].round(6))
    rows = []
    for (model, subset, ratio), at in runs.groupby(["model", "eval_sets", "ratio"], sort=True):
        ref_ppl, ref_avg = {}, {}
        for reference in references:
            ref = at[at["method"] == reference]
            ref_ppl[reference] = ref["ppl_wikitext2"].mean() if len(ref) else float("nan")
            ref_avg[reference] = 100 * ref["zs_avg"].mean() if len(ref) else float("nan")
        block = []
        for method, group in at.groupby("method", sort=True):
            ppl, avg = group["ppl_wikitext2"].mean(), 100 * group["zs_avg"].mean()
            regime = group["data_regime"].iloc[0]
            block.append({"model": model, "eval_sets": subset, "ratio": ratio, "method": method,
                          "data regime": regime, "n": len(group), "ppl": ppl, "avg": avg,
                          **{f"ppl / {r}": ppl / ref_ppl[r] for r in references},
                          **{f"avg - {r}": avg - ref_avg[r] for r in references},
                          "params M": group["params_pruned"].mean() / 1e6,
                          "ratio achieved": group["ratio_achieved"].mean(),
                          "dense ppl": group["dense_ppl_wikitext2"].mean(),
                          "dense avg": 100 * group["dense_zs_avg"].mean()})
        rows += sorted(block, key=lambda r: (REGIME_ORDER.get(r["data regime"], len(REGIME_ORDER)),
                                             r["ppl"]))
    table = pd.DataFrame(rows, columns=columns)
    for col in columns[6:]:  # pd.NA (a nullable column's missing value) -> NaN
        table[col] = table[col].astype(object).where(table[col].notna(), float("nan"))
    return table.astype({c: "Int64" if c == "n" else float for c in columns[5:]})


TRANSFER_MEASURES = {"zs_avg": "zero-shot average (%)", "ppl_wikitext2": "WikiText-2 perplexity",
                     "ks_mean_dense_vs_pruned": "mean KS(original, pruned)"}


def policy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs pruned by a policy (trained or reused), without recovery fine-tuning (it changes
    the model after the policy acted), zero-shot in percent, with their evaluation subset."""
    with_policy = runs[runs["policy_train_ratio"].notna() & runs["rft"].isna()]
    return with_policy.assign(zs_avg=100 * with_policy["zs_avg"],
                              eval_sets=eval_sets(with_policy))


def transfer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Policy transfer, long form: one row per model, method, evaluation subset, train ratio
    and reuse ratio (mean over seeds) with each of TRANSFER_MEASURES."""
    long = (policy_runs(runs)
            .groupby(["model", "method", "eval_sets", "policy_train_ratio", "ratio_target",
                      "policy_transferred"])
            .agg(n=("run_dir", "size"), **{c: (c, "mean") for c in TRANSFER_MEASURES})
            .reset_index())
    return long.rename(columns={"policy_train_ratio": "train ratio", "ratio_target": "reuse ratio",
                                "policy_transferred": "transferred"})


def transfer_matrices(runs: pd.DataFrame) -> dict[tuple[str, str, str, str], pd.DataFrame]:
    """{(model, method, evaluation subset, measure): train ratio x reuse ratio matrix}, for the
    measures the runs hold."""
    matrices = {}
    for (model, method, subset), group in policy_runs(runs).groupby(
            ["model", "method", "eval_sets"]):
        for measure in TRANSFER_MEASURES:
            if group[measure].notna().any():
                matrices[(model, method, subset, measure)] = group.pivot_table(
                    index="policy_train_ratio", columns="ratio_target", values=measure,
                    aggfunc="mean")
    return matrices


def compression_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Compression time per model, method, device, reused policy and RFT setting: seconds,
    mean (std, min, max) over the runs, ratios pooled, beside the paper's PruneNet time."""
    keys = ["model", "method", "device", "policy_transferred", "rft"]
    table = (runs.groupby(keys, dropna=False)
             .agg(n=("run_dir", "size"),
                  ratios=("ratio_target", lambda r: " ".join(f"{x:g}" for x in sorted(set(r)))),
                  compression_s=("compression_seconds", "mean"),
                  compression_s_std=("compression_seconds", "std"),
                  compression_s_min=("compression_seconds", "min"),
                  compression_s_max=("compression_seconds", "max"),
                  policy_train_s=("policy_train_seconds", "mean"),
                  rft_s=("rft_seconds", "mean"),
                  total_s=("total_seconds", "mean"))
             .reset_index().rename(columns={"policy_transferred": "reused policy"}))
    table["paper compression_s"] = [
        paper.compression_seconds(m) if method == "prunenet" and not reused else None
        for m, method, reused in zip(table["model"], table["method"], table["reused policy"])]
    table["rft"] = table["rft"].fillna("none")
    return table.astype({"paper compression_s": float})


def ablation_table(raw: pd.DataFrame, references: Iterable[str] = ("dense", "activation_2k")
                   ) -> pd.DataFrame:
    """The calibration-free experiment's ablation (rows of evaluate.py's CSV, in the order they
    were run): one row per label (mean, min and max over its seeds), its perplexity against
    each reference label (`x <reference>`), and for the chain of `+` labels, each adding one
    ingredient to the `+` row before it (the first to the row just above it), `x previous`."""
    if raw.empty:
        return pd.DataFrame()
    ablation = (raw.groupby(["label", "method", "overrides", "ratio", "chunks"], sort=False,
                            as_index=False)
                .agg(n=("seed", "size"), ppl=("ppl", "mean"), ppl_min=("ppl", "min"),
                     ppl_max=("ppl", "max"), ratio_achieved=("ratio_achieved", "mean")))
    by_label = ablation.set_index("label")["ppl"]
    for reference in references:
        ablation[f"x {reference}"] = ablation["ppl"] / by_label.get(reference, float("nan"))
    chain = ablation["label"].str.startswith("+")
    base = chain | (chain.shift(-1, fill_value=False) & ~chain.cummax())
    ablation["x previous"] = (ablation["ppl"] / ablation["ppl"].where(base).ffill().shift()
                              ).where(chain)
    return ablation


def layer_table(sensitivity: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """Per layer: perplexity with only that layer pruned, per selection rule (sensitivity CSV),
    beside the layer's activity statistics (diagnostics CSV)."""
    per_layer = pd.DataFrame()
    if not sensitivity.empty:
        per_layer = sensitivity.pivot_table(index="layer", columns="rule",
                                            values="ppl").add_prefix("ppl only this layer pruned: ")
    if not diagnostics.empty:
        per_layer = per_layer.join(diagnostics.set_index("layer"), how="outer")
    return per_layer.reset_index() if not per_layer.empty else per_layer


def throughput_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model, method and ratio (runs scored on different evaluation subsets apart):
    the number of runs, the fraction of parameters removed, and the mean of every speed and
    memory column the runs recorded, beside the paper's tokens/s where it reports them."""
    speed_cols = ["speedup", "ideal_speedup"] + sorted(
        c for c in runs.columns if c.startswith(("throughput_", "peak_memory_bytes_"))
        and runs[c].notna().any())
    keys = ["model", "method", "ratio_target", "eval_sets"]
    runs = runs.assign(eval_sets=eval_sets(runs))
    table = (runs.groupby(keys).agg(n=("run_dir", "size"),
                                    params_removed=("params_removed_fraction", "mean"),
                                    **{c: (c, "mean") for c in speed_cols})
             .reset_index().rename(columns={"ratio_target": "ratio"}))
    for key in ("dense", "pruned", "speedup"):
        table[f"paper {key}"] = [(paper.throughput(m, r) or {}).get(key)
                                 for m, r in zip(table["model"], table["ratio"])]
    return table


def speedup_label(column: str) -> str:
    """A speedup column in words: "throughput_settings_bs8_speedup_decode" -> "decode, batch 8",
    "speedup" -> "speedup"."""
    batch = re.search(r"_bs(\d+)_", column)
    phase = re.search(r"speedup_(prefill|decode)$", column)
    if not phase:
        return column.removeprefix("throughput_").replace("_", " ")
    return phase.group(1) + (f", batch {batch.group(1)}" if batch else "")


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

