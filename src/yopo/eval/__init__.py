"""Evaluation of a run (conf/eval/<name>.yaml): zero-shot accuracy (zeroshot.py), WikiText-2
perplexity (perplexity.py) and dense-vs-pruned speed (throughput.py).

The pipeline calls `dense_scores` on the dense model before pruning (cached once per model and
eval config, so a sweep over ratios evaluates the dense model once), keeps a dense copy only when
throughput is measured (`needs_dense_copy`), and calls `evaluate_run` on the pruned model.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..data import data_file
from ..data.wikitext import wikitext2_text
from ..device import device_kind
from ..errors import YopoError
from ..io import write_json
from ..paper import TASK_METRICS
from .perplexity import check_text, wikitext2_perplexity
from .tasks.local_data import FILES
from .throughput import compare_throughput
from .zeroshot import TASKS_DIR, check_options, evaluate_zeroshot

DENSE_FILE = "dense_metrics.json"


def check_eval(cfg: DictConfig) -> None:
    """Fail before any work on a bad eval config or missing / altered data (yopo.data.DataError)."""
    e = cfg.eval
    if e.tasks:
        check_options(e.tasks, e.source, e.dtype)
        if e.source == "local":
            for task in e.tasks:
                for relative in FILES[task]:
                    data_file(cfg.data.dir, relative)
    if e.perplexity is not None:
        check_text(e.perplexity.get("text", "evaluation"))  # a dict given whole may leave it out
        wikitext2_text(cfg.data.dir)  # checks the file


def needs_dense_copy(eval_cfg: DictConfig) -> bool:
    """Throughput compares dense and pruned in one process: only then is a dense copy kept."""
    return eval_cfg.get("throughput") is not None


def _scores_config(cfg: DictConfig) -> dict[str, Any]:
    """Everything the dense scores depend on: the device kind (a pruned run's identity holds
    it, and its dense reference must come from the same kind), not the throughput settings,
    not where the data lies (its files are checksummed). `format` 2: the cache holds each
    example's score too (older caches do not, so they are not found)."""
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    eval_cfg.pop("throughput", None)
    return {"model": OmegaConf.to_container(cfg.model, resolve=True), "eval": eval_cfg,
            "calibration_tokens": int(cfg.data.calibration_tokens), "format": 2,
            "device": device_kind(cfg.device, cfg.model.get("device_map")),
            # the task YAMLs set prompts, splits and metrics: an edited one must not hit the cache
            "task_yamls": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                           for p in sorted(TASKS_DIR.glob("*.yaml"))}}


def dense_cache_path(cfg: DictConfig) -> Path:
    """<runs_dir>/<model>/dense/<12 hex of sha256 of the score config>/dense_metrics.json"""
    key = hashlib.sha256(json.dumps(_scores_config(cfg), sort_keys=True).encode()).hexdigest()
    return Path(cfg.paths.runs_dir) / cfg.model.name / "dense" / key[:12] / DENSE_FILE


def score_model(model, tokenizer, cfg: DictConfig) -> dict[str, Any]:
    """Zero-shot accuracy and WikiText-2 perplexity of one model, as the eval config asks
    (a skipped part is None), and each zero-shot example's score under "examples"."""
    e = cfg.eval
    zeroshot = None
    if e.tasks:
        zeroshot = evaluate_zeroshot(model, tokenizer, list(e.tasks), source=e.source,
                                     data_dir=cfg.data.dir, limit=e.limit,
                                     batch_size=e.batch_size, dtype=e.dtype)
    perplexity = None
    if e.perplexity is not None:
        perplexity = wikitext2_perplexity(model, tokenizer, cfg.data.dir,
                                          int(cfg.data.calibration_tokens), **e.perplexity)
    return {"zeroshot": zeroshot,
            "ppl_wikitext2": perplexity["value"] if perplexity else None,
            "ppl_protocol": perplexity,
            "examples": zeroshot.pop("examples") if zeroshot else None}


DENSE_KEYS = ("zeroshot", "ppl_wikitext2", "ppl_protocol", "examples", "score_config")


def read_dense_cache(path: Path) -> dict[str, Any]:
    """A cached dense-score file, or one clear error if it cannot be what dense_scores wrote."""
    try:
        cached = json.loads(path.read_text())
        missing = [key for key in DENSE_KEYS if key not in cached]
    except (OSError, ValueError, TypeError) as err:
        missing = [f"readable JSON ({type(err).__name__})"]
    if missing:
        raise YopoError(f"the dense-score cache {path} is corrupt (no {', '.join(missing)}): "
                        "delete that file and rerun; the dense model is evaluated again")
    return cached


def dense_scores(model, tokenizer, cfg: DictConfig) -> dict[str, Any] | None:
    """The dense model's scores, read from the cache or computed now and cached (atomically)."""
    if not cfg.eval.tasks and cfg.eval.perplexity is None:
        return None
    path = dense_cache_path(cfg)
    if path.exists():
        return {**read_dense_cache(path), "cached": str(path)}
    started = time.perf_counter()
    scores = score_model(model, tokenizer, cfg)
    scores["eval_seconds"] = time.perf_counter() - started
    write_json(path, {**scores, "score_config": _scores_config(cfg)})
    return {**scores, "cached": None}


def evaluate_run(cfg: DictConfig, model, tokenizer, adapter, dense: dict[str, Any] | None,
                 dense_model=None, ideal: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics.json entries of the pruned `model`: zeroshot, ppl_wikitext2, ppl_protocol,
    throughput, peak_memory_bytes, eval_seconds, and the dense scores under "dense"."""
    started = time.perf_counter()
    metrics = score_model(model, tokenizer, cfg)
    throughput, peak = None, None
    if needs_dense_copy(cfg.eval):
        t = cfg.eval.throughput
        throughput = compare_throughput(dense_model, model, adapter, list(t.batch_sizes),
                                        int(t.prompt_tokens), int(t.decode_tokens),
                                        int(t.warmup), int(t.repeats), ideal)
        largest = throughput["settings"][-1]
        peak = {"dense": largest["dense"]["peak_memory_bytes"],
                "pruned": largest["pruned"]["peak_memory_bytes"],
                "batch_size": largest["batch_size"], "method": throughput["peak_memory_method"]}
    return {**metrics, "throughput": throughput, "peak_memory_bytes": peak,
            "eval_seconds": time.perf_counter() - started, "dense": dense}


def format_eval(metrics: dict[str, Any]) -> list[str]:
    """Summary lines: dense vs pruned accuracy per task, perplexity, speedups."""
    lines = []
    dense = metrics.get("dense") or {}
    pruned_zs, dense_zs = metrics.get("zeroshot"), dense.get("zeroshot")
    if pruned_zs:
        limit = pruned_zs.get("limit")
        lines.append("zero-shot " + ("(full sets)" if limit is None else
                     f"(first {limit} examples per task: a smoke test, not the paper's numbers)"))
        lines.append(f"  {'task':14s} {'metric':8s} {'dense':>15s} {'pruned':>15s}")
        for task in [t for t in TASK_METRICS if t in pruned_zs]:
            p, d = pruned_zs[task], (dense_zs or {}).get(task)
            lines.append(f"  {task:14s} {p['metric']:8s} {_score(d):>15s} {_score(p):>15s}")
        dense_avg = f"{dense_zs['avg']:.4f}" if dense_zs else "-"
        lines.append(f"  {'average':14s} {'':8s} {dense_avg:>15s} {pruned_zs['avg']:>15.4f}")
    if metrics.get("ppl_wikitext2") is not None:
        proto = metrics["ppl_protocol"]
        dense_ppl = dense.get("ppl_wikitext2")
        lines.append(f"WikiText-2 token perplexity (seqlen {proto['seqlen']}, {proto['chunks']} "
                     f"chunks): dense {dense_ppl if dense_ppl is None else f'{dense_ppl:.2f}'}"
                     f" -> pruned {metrics['ppl_wikitext2']:.2f}")
    if metrics.get("throughput"):
        ideal = metrics["throughput"]["ideal_speedup"]
        for s in metrics["throughput"]["settings"]:
            lines.append(f"speedup at batch {s['batch_size']}: prefill {s['speedup']['prefill']:.2f}x"
                         f" (ideal {ideal['prefill']:.2f}x), decode {s['speedup']['decode']:.2f}x"
                         f" (ideal {ideal['decode']:.2f}x)")
    if "eval_seconds" in metrics and lines:
        lines.append(f"evaluation {metrics['eval_seconds']:.1f} s"
                     + (" (dense scores from cache)" if dense.get("cached") else ""))
    return lines


def _score(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    return f"{entry['value']:.4f}" + (f"±{entry['stderr']:.4f}" if entry["stderr"] else "")


__all__ = ["TASK_METRICS", "check_eval", "dense_scores", "evaluate_run", "format_eval",
           "needs_dense_copy", "score_model"]
