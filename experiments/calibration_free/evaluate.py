"""The calibration-free experiment: WikiText-2 token perplexity of suite methods on SmolLM2,
one CSV row per run.

Each run is `label=method[,override,...]` (Hydra overrides of the method group, e.g.
`mine=expected_activation,method.bias_scale=1.0`); every run prunes a fresh copy of the dense
model through the method's own `prune` (the same code path as `python src/run.py`), then measures
perplexity with yopo.eval.perplexity on non-overlapping 512-token chunks of

  --part calibration : the held-out calibration slice (tuning, ablations), or
  --part evaluation  : the evaluation part (the final comparison, run once).

Rows already in --out are skipped, so an interrupted run resumes.

    python experiments/calibration_free/evaluate.py --part calibration --chunks 8 --ratios 0.2 \
        --runs random=random mine=expected_activation --seeds 0 1 2 \
        --out experiments/calibration_free/results/ablation_calibration.csv
"""
from __future__ import annotations

import argparse
import copy
import csv
import re
import time
from pathlib import Path

import torch

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import BATCH_SIZE, CFG, SEQLEN, load
from yopo.config import compose
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.eval.perplexity import chunk_ids, chunked_perplexity
from yopo.methods import build_method
from yopo.methods.base import PruneContext

FIELDS = ["label", "method", "overrides", "ratio", "seed", "part", "chunks", "ppl",
          "ratio_achieved", "prune_seconds"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--seeded", nargs="*", default=["random"],
                   help="labels that run once per seed (others once, seed 0)")
    p.add_argument("--part", choices=["calibration", "evaluation"], default="calibration")
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    model, tok, adapter = load()
    ids = wikitext2_token_ids(tok, CFG.data.dir)
    calibration, evaluation = split_calibration(ids, int(CFG.data.calibration_tokens))
    chunks = chunk_ids(calibration if a.part == "calibration" else evaluation, SEQLEN, a.chunks)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        with open(out) as f:
            done = {(r["label"], float(r["ratio"]), int(r["seed"]), r["part"], int(r["chunks"]))
                    for r in csv.DictReader(f)}
    new = not out.exists()
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        if ("dense", 0.0, 0, a.part, a.chunks) not in done:
            ppl = chunked_perplexity(model, chunks, batch_size=BATCH_SIZE)["value"]
            writer.writerow({"label": "dense", "method": "none", "overrides": "", "ratio": 0.0,
                             "seed": 0, "part": a.part, "chunks": a.chunks, "ppl": round(ppl, 4),
                             "ratio_achieved": 0.0, "prune_seconds": 0.0})
            f.flush()
            print("dense", round(ppl, 3), flush=True)
        for run in a.runs:
            label, _, spec = run.partition("=")
            method_name, *overrides = re.split(r",(?![^\[]*\])", spec)  # not inside [...]
            cfg = compose([f"method={method_name}", *overrides])
            seeds = a.seeds if label in a.seeded else [0]
            for ratio in a.ratios:
                for seed in seeds:
                    if (label, ratio, seed, a.part, a.chunks) in done:
                        continue
                    pruned = copy.deepcopy(model)
                    started = time.perf_counter()
                    report = build_method(cfg.method).prune(pruned, adapter, PruneContext(
                        ratio=ratio, seed=seed, tokenizer=tok, data_dir=Path(CFG.data.dir),
                        calibration_tokens=int(CFG.data.calibration_tokens)))
                    seconds = time.perf_counter() - started
                    ppl = chunked_perplexity(pruned, chunks, batch_size=BATCH_SIZE)["value"]
                    del pruned
                    writer.writerow({"label": label, "method": method_name,
                                     "overrides": " ".join(overrides), "ratio": ratio,
                                     "seed": seed, "part": a.part, "chunks": a.chunks,
                                     "ppl": round(ppl, 4),
                                     "ratio_achieved": round(report.get("ratio_achieved", 0), 5),
                                     "prune_seconds": round(seconds, 1)})
                    f.flush()
                    print(label, ratio, seed, round(ppl, 3), f"({seconds:.0f} s prune)",
                          flush=True)


if __name__ == "__main__":
    with torch.inference_mode(False):
        main()
