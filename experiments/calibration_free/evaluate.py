"""The calibration-free experiment: WikiText-2 token perplexity of suite methods on SmolLM2,
one CSV row per run, every run an ordinary `python src/run.py` run.

Each run is `label=method[,override,...]` (Hydra overrides of the method group, e.g.
`mine=expected_activation,method.bias_scale=1.0`). For every label, ratio and seed this runs
`src/run.py` with `eval=tuning` (perplexity alone, in 512-token chunks with 4 per forward
pass) on

  --part calibration : the held-out calibration slice (tuning, ablations), or
  --part evaluation  : the evaluation part (the final comparison, run once),

into `--runs-dir` (default experiments/calibration_free/runs, not in git), and appends one row
per run from its metrics.json to `--out`. src/run.py skips a run whose identical run is already
complete, and rows already in `--out` are kept, so an interrupted sweep resumes. The `dense`
row is the dense model's score that the runs record.

    python experiments/calibration_free/evaluate.py --part calibration --chunks 8 --ratios 0.2 \
        --runs random=random mine=expected_activation --seeds 0 1 2 \
        --out experiments/calibration_free/results/ablation_calibration.csv
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import BATCH_SIZE, EXPERIMENT_DIR, SEQLEN
from yopo import results
from yopo.config import REPO_ROOT, compose
from yopo.identity import identify
from yopo.io import atomic_file

FIELDS = ["label", "method", "overrides", "ratio", "seed", "part", "chunks", "ppl",
          "ratio_achieved", "prune_seconds"]


def run_overrides(method: str, overrides: list[str], ratio: float, seed: int, part: str,
                  chunks: int, runs_dir: Path) -> list[str]:
    """The src/run.py overrides of one row: the method's, then the experiment's evaluation
    (the unfused model, as the rows before runs went through src/run.py were scored)."""
    return [f"method={method}", *overrides, f"ratio={ratio}", f"seed={seed}", "eval=tuning",
            f"eval.perplexity.text={part}", f"eval.perplexity.max_chunks={chunks}",
            f"eval.perplexity.seqlen={SEQLEN}", f"eval.perplexity.batch_size={BATCH_SIZE}",
            "inference.fuse_gate_up=false", "save_model=false", "logger=none",
            f"paths.runs_dir={runs_dir}"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--seeded", nargs="*", default=["random"],
                   help="labels that run once per seed (others once, seed 0)")
    p.add_argument("--part", choices=["calibration", "evaluation"], default="calibration")
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--runs-dir", type=Path, default=EXPERIMENT_DIR / "runs")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    out = Path(a.out)
    rows = []
    if out.exists():
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
    done = {(r["label"], float(r["ratio"]), int(r["seed"]), r["part"], int(r["chunks"]))
            for r in rows}
    new = []
    for run in a.runs:
        label, _, spec = run.partition("=")
        method, *overrides = re.split(r",(?![^\[]*\])", spec)  # not inside [...]
        for ratio in a.ratios:
            for seed in (a.seeds if label in a.seeded else [0]):
                if (label, ratio, seed, a.part, a.chunks) in done:
                    continue
                args = run_overrides(method, overrides, ratio, seed, a.part, a.chunks,
                                     a.runs_dir.resolve())
                print(label, ratio, seed, flush=True)
                subprocess.run([sys.executable, "src/run.py", *args], cwd=REPO_ROOT,
                               env=os.environ, check=True)
                new.append((label, method, overrides, ratio, seed, identify(compose(args)).run_id))
    records = results.load_runs("local", runs_dir=a.runs_dir)
    by_id = {r["run_id"]: r for r in records.to_dict("records")}
    if new and ("dense", 0.0, 0, a.part, a.chunks) not in done:
        first = by_id[new[0][-1]]
        rows.append({"label": "dense", "method": "none", "overrides": "", "ratio": 0.0,
                     "seed": 0, "part": a.part, "chunks": a.chunks,
                     "ppl": round(first["dense_ppl_wikitext2"], 4), "ratio_achieved": 0.0,
                     "prune_seconds": 0.0})
    for label, method, overrides, ratio, seed, run_id in new:
        record = by_id[run_id]
        rows.append({"label": label, "method": method, "overrides": " ".join(overrides),
                     "ratio": ratio, "seed": seed, "part": a.part, "chunks": a.chunks,
                     "ppl": round(record["ppl_wikitext2"], 4),
                     "ratio_achieved": round(record["ratio_achieved"] or 0, 5),
                     "prune_seconds": round(record["compression_seconds"], 1)})
    with atomic_file(out) as tmp, open(tmp, "w", newline="") as f:  # never half-written
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
