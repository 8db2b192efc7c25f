"""The tables the notebooks show: pure functions of the runs frame. A cell combines only runs
of one variant (its configuration less the seed; `n` counts its seeds), scored under one
protocol, and, for speed, memory and time, on one machine (yopo.results.cells). Tuning runs
(perplexity of the calibration slice) and runs without scores never reach an evaluation table.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import pandas as pd

from .. import paper
from . import cells
from .schema import TASKS


# ---- what tables group by -------------------------------------------------------------------
def distinct_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run once: the same run (one run id) found in two folders is not two seeds."""
    return runs[~cells.run_key(runs).duplicated()]


def reported(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run once, its perplexity kept only where it is of the evaluation text: a tuning
    score (`eval=tuning`: the calibration slice's perplexity) is never a result."""
    runs = distinct_runs(runs)
    on_evaluation_text = runs["ppl_text"] == "evaluation"
    return runs.assign(ppl_wikitext2=runs["ppl_wikitext2"].where(on_evaluation_text),
                       ppl_protocol=runs["ppl_protocol"].where(on_evaluation_text))


def evaluated_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with an evaluation score (zero-shot, or perplexity of the evaluation text): what
    evaluation tables show. Tuning runs and `eval=none` runs are left out."""
    runs = reported(runs)
    return runs[runs["zs_protocol"].notna() | runs["ppl_protocol"].notna()]


def eval_protocol(runs: pd.DataFrame) -> pd.Series:
    """Both protocols of each run as one label: "zero-shot: <...>; perplexity: <...>"."""
    def part(name: str, value: Any) -> str:
        return f"{name}: {value if isinstance(value, str) else 'none'}"

    return pd.Series([f"{part('zero-shot', z)}; {part('perplexity', p)}"
                      for z, p in zip(runs["zs_protocol"], runs["ppl_protocol"])],
                     index=runs.index, dtype=object)


def _n(group: pd.DataFrame) -> int:
    """Runs in a cell: seeds of one variant (each run counted once)."""
    return int(cells.run_key(group).nunique())


def _variant_columns(runs: pd.DataFrame, methods: Iterable[str]) -> list[str]:
    """The cell columns' variants: every variant in the frame, and every method asked for
    (a column even before any run of it exists), in method order."""
    shown = set(runs["variant"].unique()) | set(methods)
    return sorted(shown, key=lambda v: (v.split("[")[0], v))


# ---- tables shared by notebooks -------------------------------------------------------------
def zeroshot_table(runs: pd.DataFrame, models: Iterable[str],
                   methods: Iterable[str] = ()) -> pd.DataFrame:
    """Model x ratio x zero-shot protocol rows; per variant (a method and its options, RFT
    included: `prunenet[rft=lora]`), the number of runs (seeds) and each task's accuracy and
    the average in percent (mean over seeds); then the dense model and the paper's numbers.
    `methods` get their columns even before any run of theirs exists (the methods of the
    table's experiment grid, say), so a missing comparison shows as empty.

    Rows: every (ratio, protocol) measured for the model (policies trained at that ratio;
    transferred policies are notebook 04's subject) plus every ratio the paper reports for it
    (protocol empty). Runs scored under different protocols are separate rows, never averaged.
    """
    models = list(models)
    runs = evaluated_runs(runs)
    runs = runs[~runs["policy_transferred"] & runs["model"].isin(models)
                & runs["zs_avg"].notna()]
    runs = runs.assign(ratio=runs["ratio_target"].round(6))
    variants = _variant_columns(runs, methods)
    tasks = [*TASKS, "avg"]
    columns = ["model", "ratio", "protocol",
               *(f"{v} {c}" for v in variants for c in ("n", *tasks)),
               "dense avg", "paper dense avg", "paper prunenet avg", "paper slicegpt avg",
               "paper prunenet+RFT avg"]
    rows = []
    for model in models:
        measured = runs[runs["model"] == model]
        groups = {(r, p): g for (r, p), g in measured.groupby(["ratio", "zs_protocol"])}
        paper_ratios = ({r for (m, _, r) in paper.ZEROSHOT_AVG if m == model and r > 0}
                        | {r for (m, r) in paper.RECOVERY_AVG if m == model})
        for ratio in paper_ratios - {r for r, _ in groups}:
            groups[(ratio, "")] = measured.iloc[:0]  # the paper's numbers alone
        for (ratio, protocol), at_ratio in sorted(groups.items()):
            row: dict[str, Any] = {"model": model, "ratio": ratio, "protocol": protocol or None,
                                   "dense avg": 100 * at_ratio["dense_zs_avg"].mean(),
                                   "paper dense avg": paper.zeroshot(model, "dense", 0.0)["avg"],
                                   "paper prunenet+RFT avg": paper.recovery_avg(model, ratio, True)}
            for method in ("prunenet", "slicegpt"):
                row[f"paper {method} avg"] = paper.zeroshot(model, method, ratio)["avg"]
            for variant in variants:
                cell = at_ratio[at_ratio["variant"] == variant]
                row[f"{variant} n"] = _n(cell)
                for task in tasks:
                    row[f"{variant} {task}"] = 100 * cell[f"zs_{task}"].mean()
            rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: "Int64" if c.endswith(" n") else float
                         for c in columns if c not in ("model", "protocol")})


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
            rows.append({"model": run["model"], "method": run["method"],
                         "variant": run["variant"], "rft": run["rft"],
                         "ratio": run["ratio_target"], "seed": run["seed"],
                         "transferred": run["policy_transferred"], "task": task,
                         "metric": run.get(f"zs_{task}_metric"),
                         "accuracy": 100 * run[f"zs_{task}"],
                         "stderr": 100 * run[f"zs_{task}_stderr"],
                         "dense accuracy": 100 * run[f"dense_zs_{task}"],
                         "limit": None if pd.isna(run["eval_limit"]) else float(run["eval_limit"]),
                         "protocol": run["zs_protocol"], "run_dir": run["run_dir"]})
    return pd.DataFrame(rows, columns=["model", "method", "variant", "rft", "ratio", "seed",
                                       "transferred",
                                       "task", "metric", "accuracy", "stderr", "dense accuracy",
                                       "limit", "protocol", "run_dir"])


def recovery_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Recovery fine-tuning: one row per model, variant (method and options, RFT setting
    included), ratio and protocol (mean over seeds) with the five-task average (percent) and
    WikiText-2 perplexity of the same runs before and after RFT, the gains, and the paper's
    PruneNet averages without and with RFT."""
    columns = ["model", "method", "variant", "ratio", "rft", "protocol", "n", "avg before",
               "avg after", "avg gain", "ppl before", "ppl after", "ppl after / before",
               "dense avg", "rft_s", "paper avg without RFT", "paper avg with RFT"]
    tuned = evaluated_runs(runs)
    tuned = tuned[tuned["rft"].notna() & ~tuned["policy_transferred"]]
    tuned = tuned.assign(protocol=eval_protocol(tuned))
    rows = []
    for (model, variant, ratio, protocol), group in tuned.groupby(
            ["model", "variant", "ratio_target", "protocol"], sort=True):
        before, after = 100 * group["before_rft_zs_avg"].mean(), 100 * group["zs_avg"].mean()
        ppl_before, ppl_after = (group["before_rft_ppl_wikitext2"].mean(),
                                 group["ppl_wikitext2"].mean())
        method = group["method"].iloc[0]
        on_paper = method == "prunenet"
        rows.append({"model": model, "method": method, "variant": variant, "ratio": ratio,
                     "rft": group["rft"].iloc[0], "protocol": protocol, "n": _n(group),
                     "avg before": before, "avg after": after,
                     "avg gain": after - before, "ppl before": ppl_before,
                     "ppl after": ppl_after, "ppl after / before": ppl_after / ppl_before,
                     "dense avg": 100 * group["dense_zs_avg"].mean(),
                     "rft_s": group["rft_seconds"].mean(),
                     "paper avg without RFT": paper.recovery_avg(model, ratio, False)
                     if on_paper else None,
                     "paper avg with RFT": paper.recovery_avg(model, ratio, True)
                     if on_paper else None})
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({c: "Int64" if c == "n" else float for c in columns[6:]})


REGIME_ORDER = {"weights only": 0, "self-generated text": 1, "calibration text": 2}  # row order


def regime_table(runs: pd.DataFrame, models: Iterable[str] | None = None,
                 references: Iterable[str] = ("activation",)) -> pd.DataFrame:
    """The data regimes side by side: one row per model, evaluation protocol, ratio and
    variant (mean over seeds), with its data regime, WikiText-2 perplexity and five-task
    average (percent), each also against every `references` variant's runs at the same model,
    protocol and ratio (`ppl / <reference>`, `avg - <reference>`), the parameters left, the
    ratio achieved and the dense model's scores. Rows are sorted by regime, then perplexity.
    Runs with recovery fine-tuning or a transferred policy are left out (their own notebooks
    show them)."""
    references = list(references)
    compared = [f"{kind} {r}" for r in references for kind in ("ppl /", "avg -")]
    columns = ["model", "protocol", "ratio", "method", "variant", "data regime", "n", "ppl",
               "avg", *compared, "params M", "ratio achieved", "dense ppl", "dense avg"]
    runs = evaluated_runs(runs)
    runs = runs[runs["rft"].isna() & ~runs["policy_transferred"] & runs["ppl_wikitext2"].notna()]
    if models is not None:
        runs = runs[runs["model"].isin(list(models))]
    runs = runs.assign(protocol=eval_protocol(runs), ratio=runs["ratio_target"].round(6))
    rows = []
    for (model, protocol, ratio), at in runs.groupby(["model", "protocol", "ratio"], sort=True):
        ref_ppl, ref_avg = {}, {}
        for reference in references:
            ref = at[at["variant"] == reference]
            ref_ppl[reference] = ref["ppl_wikitext2"].mean() if len(ref) else float("nan")
            ref_avg[reference] = 100 * ref["zs_avg"].mean() if len(ref) else float("nan")
        block = []
        for variant, group in at.groupby("variant", sort=True):
            ppl, avg = group["ppl_wikitext2"].mean(), 100 * group["zs_avg"].mean()
            regime = group["data_regime"].iloc[0]
            block.append({"model": model, "protocol": protocol, "ratio": ratio,
                          "method": group["method"].iloc[0], "variant": variant,
                          "data regime": regime, "n": _n(group), "ppl": ppl, "avg": avg,
                          **{f"ppl / {r}": ppl / ref_ppl[r] for r in references},
                          **{f"avg - {r}": avg - ref_avg[r] for r in references},
                          "params M": group["params_pruned"].mean() / 1e6,
                          "ratio achieved": group["ratio_achieved"].mean(),
                          "dense ppl": group["dense_ppl_wikitext2"].mean(),
                          "dense avg": 100 * group["dense_zs_avg"].mean()})
        rows += sorted(block, key=lambda r: (REGIME_ORDER.get(r["data regime"], len(REGIME_ORDER)),
                                             r["ppl"]))
    table = pd.DataFrame(rows, columns=columns)
    for col in columns[7:]:  # pd.NA (a nullable column's missing value) -> NaN
        table[col] = table[col].astype(object).where(table[col].notna(), float("nan"))
    return table.astype({c: "Int64" if c == "n" else float for c in columns[6:]})


TRANSFER_MEASURES = {"zs_avg": "zero-shot average (%)", "ppl_wikitext2": "WikiText-2 perplexity",
                     "ks_mean_dense_vs_pruned": "mean KS(original, pruned)"}


def policy_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs pruned by a policy (trained or reused), without recovery fine-tuning (it changes
    the model after the policy acted), zero-shot in percent, with their evaluation protocol.
    Trained and reused policies of one configuration are one variant here (the reused
    policy's content, like the seed, is not part of it)."""
    with_policy = reported(runs)
    with_policy = with_policy[with_policy["policy_train_ratio"].notna() & with_policy["rft"].isna()]
    return with_policy.assign(zs_avg=100 * with_policy["zs_avg"],
                              variant=cells.label_variants(with_policy, ignore=("policy",)),
                              protocol=eval_protocol(with_policy))


def transfer_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Policy transfer, long form: one row per model, variant, evaluation protocol, train
    ratio and reuse ratio (mean over seeds) with each of TRANSFER_MEASURES."""
    keys = ["model", "variant", "protocol", "policy_train_ratio", "ratio_target",
            "policy_transferred"]
    rows = []
    for key, group in policy_runs(runs).groupby(keys):
        rows.append({**dict(zip(keys, key)), "n": _n(group),
                     **{c: group[c].mean() for c in TRANSFER_MEASURES}})
    long = pd.DataFrame(rows, columns=[*keys, "n", *TRANSFER_MEASURES])
    return long.rename(columns={"policy_train_ratio": "train ratio", "ratio_target": "reuse ratio",
                                "policy_transferred": "transferred"})


def transfer_matrices(runs: pd.DataFrame) -> dict[tuple[str, str, str, str], pd.DataFrame]:
    """{(model, variant, evaluation protocol, measure): train ratio x reuse ratio matrix}, for
    the measures the runs hold."""
    matrices = {}
    for (model, variant, protocol), group in policy_runs(runs).groupby(
            ["model", "variant", "protocol"]):
        for measure in TRANSFER_MEASURES:
            if group[measure].notna().any():
                matrices[(model, variant, protocol, measure)] = group.pivot_table(
                    index="policy_train_ratio", columns="ratio_target", values=measure,
                    aggfunc="mean")
    return matrices


def compression_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Compression time per model, variant, machine (`hardware`: device, its name, threads) and
    reused policy: seconds, mean (std, min, max) over the runs, ratios pooled, beside the
    paper's PruneNet time."""
    keys = ["model", "method", "variant", "hardware", "policy_transferred", "rft"]
    runs = distinct_runs(runs)
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
    """One row per model, variant, ratio, machine (`hardware`), `round_to` and inference
    layout (`fuse_gate_up`): the number of runs, the fraction of parameters removed, and the
    mean of every speed and memory column the runs recorded, beside the paper's tokens/s where
    it reports them. Speeds measured on different machines or layouts are never pooled."""
    speed_cols = ["speedup", "ideal_speedup"] + sorted(
        c for c in runs.columns if c.startswith(("throughput_", "peak_memory_bytes_"))
        and runs[c].notna().any())
    keys = ["model", "method", "variant", "ratio_target", "hardware", "round_to", "fuse_gate_up"]
    runs = distinct_runs(runs)
    table = (runs.groupby(keys, dropna=False)
             .agg(n=("run_dir", "size"),
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

