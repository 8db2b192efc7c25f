"""A tiny sweep of real runs, built once per test session and shared by test_results.py,
test_tracking.py and test_notebooks.py (read-only: tests that write into a run folder copy it).

Three tiny_llama PruneNet runs with eval=none: policies trained at ratios 0.1 and 0.2, and the
0.1 policy reused at 0.2 (a transferred run). Each run folder also gets its FFN1 spectra.
`eval_record` makes a synthetic record with every evaluation key instead.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM

from yopo import paper
from yopo.adapters import get_adapter
from yopo.config import REPO_ROOT, compose
from yopo.models import load_model
from yopo.spectra import SPECTRA_FILE, ffn1_spectra, save_spectra

MODEL = "tiny_llama"
RATIOS = (0.1, 0.2)
TRANSFER = (0.1, 0.2)  # (policy trained at, reused at)
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def _run(overrides: list[str]) -> None:
    # wandb logging has tests of its own (test_tracking.py)
    common = [f"model={MODEL}", "method.episodes=2", "eval=none", "logger=none"]
    subprocess.run([sys.executable, "src/run.py", *overrides, *common], cwd=REPO_ROOT,
                   env={**os.environ, **OFFLINE}, check=True, capture_output=True)


def run_dir(runs_dir: Path, ratio: float, policy_from: float | None = None) -> Path:
    """The folder of the sweep's run at `ratio` with its own policy, or with the policy
    trained at `policy_from` (folders are named <slug>_<run id>: found by their records)."""
    for folder in sorted((runs_dir / MODEL / "prunenet").iterdir()):
        record = json.loads((folder / "metrics.json").read_text())
        trained = record["policy_source"] == "trained"
        if (record["ratio_target"] == ratio and trained == (policy_from is None)
                and record["policy_train_ratio"] == (ratio if trained else policy_from)):
            return folder
    raise LookupError(f"no run at ratio {ratio} (policy from {policy_from}) under {runs_dir}")


def _add_spectra(folder: Path) -> None:
    """What the pipeline records: FFN1 spectra of the dense and the pruned model."""
    if (folder / SPECTRA_FILE).exists():  # the pipeline already wrote them
        return
    dense, _ = load_model(compose([f"model={MODEL}"]).model, REPO_ROOT / ".cache" / "unused")
    pruned = AutoModelForCausalLM.from_pretrained(folder / "pruned_model")
    save_spectra(folder, ffn1_spectra(dense, get_adapter(dense)),
                 ffn1_spectra(pruned, get_adapter(pruned)))


def tiny_sweep(tmp_path_factory) -> Path:
    """The runs folder of the shared sweep (built on first use)."""
    root = tmp_path_factory.getbasetemp() / "tiny_sweep"
    runs_dir = root / "runs"
    if (root / "complete").exists():
        return runs_dir
    _run(["-m", "ratio=" + ",".join(f"{r:g}" for r in RATIOS), f"paths.runs_dir={runs_dir}"])
    _run([f"ratio={TRANSFER[1]:g}", f"policy='{run_dir(runs_dir, TRANSFER[0])}'",
          f"paths.runs_dir={runs_dir}"])
    for folder in sorted((runs_dir / MODEL / "prunenet").iterdir()):
        _add_spectra(folder)
    (root / "complete").touch()
    return runs_dir


def eval_record(method="prunenet", ratio=0.3, seed=0, scale=1.0, options=None, limit=100,
                device="cpu", rft="none", ppl_text="evaluation"):
    """A synthetic run record with every evaluation key, in the shapes yopo.eval writes
    (eval=default on a real model takes too long for tests). Its identity holds the method's
    `options`, the ratio, seed, evaluation limit, RFT setting and device kind, as
    yopo.identity records them."""
    tasks = {t: {"metric": paper.TASK_METRICS[t], "value": scale * (0.5 + 0.01 * i),
                 "stderr": 0.01, "n": 100} for i, t in enumerate(paper.TASKS)}
    zeroshot = {**tasks, "avg": scale * 0.52, "avg_stderr": 0.005, "limit": limit,
                "source": "local", "dtype": "float32"}
    identity = {"identity_version": 2, "model": {"name": "m"},
                "method": {"name": method, **(options or {})}, "ratio": ratio, "seed": seed,
                "eval": {"limit": limit, "perplexity": {"text": ppl_text}},
                "rft": {"name": rft}, "device": device}
    setting = {"batch_size": 8, "prompt_tokens": 128, "decode_tokens": 32,
               "dense": {"prefill_tokens_per_s": 100.0, "decode_tokens_per_s": 10.0},
               "pruned": {"prefill_tokens_per_s": 125.0, "decode_tokens_per_s": 12.0},
               "speedup": {"prefill": 1.25, "decode": 1.2}}
    return {"model": "m", "method": method, "ratio_target": ratio, "seed": seed,
            "ratio_semantics": "ffn_width", "zeroshot": zeroshot, "ppl_wikitext2": 12.5,
            "ppl_protocol": {"value": 12.5, "chunks": 16, "seqlen": 2048, "text": ppl_text,
                             "calibration_tokens": 32768},
            "identity": identity, "device": device,
            "rft": {"setting": rft} if rft != "none" else None,
            "dense": {"zeroshot": {**tasks, "avg": 0.6}, "ppl_wikitext2": 10.0},
            "throughput": {"settings": [setting],
                           "ideal_speedup": {"prefill": 1.3, "decode": 1.28}, "device": "cpu"},
            "peak_memory_bytes": {"dense": 1000, "pruned": 800, "batch_size": 8,
                                  "method": "parameters + buffers + KV cache bytes"},
            "eval_seconds": 3.0}
