"""A run's record as a row: the loader's columns, one row per run (`run_row`, `frame`), and the
record's flattened form as a wandb summary and back. A record is a run's metrics.json (written
last, so its presence marks a complete run); every key of it is optional here.

Zero-shot accuracies stay fractions as lm-eval reports them; tables show percentages.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import paper
from ..data.calibration import data_regime
from ..errors import YopoError
from . import cells

WANDB_SUBDIR = "wandb"  # the wandb folder inside a run folder (yopo.tracking writes it)

SUMMARY_SEP = "/"  # nested record keys <-> flat wandb summary keys ("zeroshot/piqa/value")

TASKS = paper.TASKS
#: Record keys copied as they are (scalars).
RECORD_COLUMNS = (
    "run_id", "model", "method", "ratio_target", "seed", "ratio_achieved", "ratio_semantics",
    "params_dense", "params_pruned", "params_removed_fraction", "ffn_width_dense",
    "ffn_width_pruned", "policy_source", "policy_train_ratio", "compression_seconds",
    "policy_train_seconds", "eval_seconds", "total_seconds", "ks_mean_dense_vs_pruned",
    "ppl_wikitext2", "peak_memory_bytes", "device", "device_name", "threads", "dtype",
    "git_commit", "calibration_source")


def _zeroshot_columns(prefix: str) -> list[str]:
    cols = [f"{prefix}{t}{suffix}" for t in TASKS for suffix in ("", "_stderr", "_metric")]
    return cols + [f"{prefix}avg", f"{prefix}avg_stderr"]


COLUMNS = (list(RECORD_COLUMNS) + ["variant", "variant_id", "zs_protocol", "ppl_protocol",
                                    "ppl_text", "hardware", "round_to", "fuse_gate_up",
                                    "data_regime", "policy_transferred", "rft", "rft_seconds"]
           + _zeroshot_columns("zs_")
           + ["dense_ppl_wikitext2"] + _zeroshot_columns("dense_zs_")
           + ["before_rft_ppl_wikitext2"] + _zeroshot_columns("before_rft_zs_")
           + ["eval_limit", "speedup", "ideal_speedup", "run_dir", "wandb_id",
              "variant_options", "options_not_used"])
STRING_COLUMNS = {"run_id", "model", "method", "ratio_semantics", "policy_source", "rft", "device",
                  "device_name", "dtype", "git_commit", "run_dir", "wandb_id",
                  "calibration_source", "data_regime", "variant", "variant_id", "zs_protocol",
                  "ppl_protocol", "ppl_text", "hardware", "fuse_gate_up", "variant_options",
                  "options_not_used",
                  *(c for c in COLUMNS if c.endswith("_metric"))}
INT_COLUMNS = {"seed", "params_dense", "params_pruned", "ffn_width_dense", "ffn_width_pruned",
               "eval_limit", "threads", "round_to"}  # nullable integers (eval_limit stays
#                                                     float if a fraction)
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
    # what may share a cell (yopo.results.cells): configuration less the seed, protocol, machine
    options = cells.variant_options(record.get("identity"))
    row["variant_id"] = cells.variant_id(options)
    row["variant_options"] = None if options is None else json.dumps(options, sort_keys=True)
    not_used = record.get("options_not_used")
    row["options_not_used"] = json.dumps(list(not_used) if isinstance(not_used, list) else [])
    row["zs_protocol"] = cells.zeroshot_protocol(record.get("zeroshot"))
    ppl_protocol = record.get("ppl_protocol")
    row["ppl_protocol"] = cells.perplexity_protocol(ppl_protocol)
    row["ppl_text"] = (ppl_protocol.get("text") or "evaluation"
                       if row["ppl_protocol"] is not None else None)
    row["hardware"] = cells.hardware(row["device"], row["device_name"], row["threads"])
    # from the identity, not the config: a wandb summary holds the first, not the second
    identity = record.get("identity") if isinstance(record.get("identity"), Mapping) else {}
    inference = identity.get("inference") if isinstance(identity.get("inference"), Mapping) else {}
    row["round_to"] = _scalar(identity.get("round_to"))
    row["fuse_gate_up"] = (None if inference.get("fuse_gate_up") is None
                           else str(inference["fuse_gate_up"]))
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
    df["variant"] = cells.label_variants(df)
    df = df.sort_values(["model", "method", "ratio_target", "seed", "run_dir"],
                        na_position="last", kind="stable")
    return df.reset_index(drop=True).copy()  # one block per dtype, not one per column

