"""Diagnostics only: how well do neuron rankings that read no external text agree with the
ranking activations on real text give, per layer of one model?

For every layer: Spearman correlation between `activation`'s score on the calibration slice
(||h_j||_2 * ||W_out[:, j]||, 16 x 512 tokens of held-out WikiText-2) and (a) the weights-only
`expected_activation` score with its defaults, (b) the same activation score on text the model
wrote itself (the cached text of `method=activation_self`: 16 x 512 tokens sampled from BOS at
temperature 1, seed 0); and the share of the neurons kept at --ratio that each keeps in common
with the real-text ranking. One CSV row per layer.

    python experiments/calibration_free/rank_agreement.py --model gemma3_270m \
        --out experiments/calibration_free/results/rank_agreement_gemma3_270m.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import spearman
from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data.calibration import Calibration
from yopo.io import atomic_file
from yopo.methods import build_method
from yopo.methods.activation import activation_scores
from yopo.methods.base import PruneContext, kept_width
from yopo.models import load_model

TOKENS, SEQ_LEN = 8192, 512  # both texts: 16 sequences of 512 tokens (activation_self's size)


def kept_overlap(a, b, k: int) -> float:
    """The share of the top-k neurons of score a [m] that are also in the top-k of b [m]."""
    return len(set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())) / k


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    cfg = compose([f"model={a.model}", "method=expected_activation"])
    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir) / "models")
    model.eval()
    adapter = get_adapter(model)
    weights_only, _ = build_method(cfg.method).scores(model, adapter)  # [L, m]
    ctx = PruneContext(a.ratio, tokenizer=tokenizer, model_name=a.model,
                       cache_dir=Path(cfg.paths.cache_dir), data_dir=Path(cfg.data.dir),
                       calibration_tokens=int(cfg.data.calibration_tokens))
    real = activation_scores(model, adapter, Calibration("local", TOKENS, SEQ_LEN).batches(ctx),
                             "cpu")
    own = activation_scores(model, adapter,
                            Calibration("self", TOKENS, SEQ_LEN).batches(ctx, model), "cpu")
    k = kept_width(real.shape[1], a.ratio)
    rows = [{"model": a.model, "layer": i, "ratio": a.ratio,
             "spearman_weights_only": round(spearman(weights_only[i], real[i]), 4),
             "spearman_self_text": round(spearman(own[i], real[i]), 4),
             "kept_in_common_weights_only": round(kept_overlap(weights_only[i], real[i], k), 4),
             "kept_in_common_self_text": round(kept_overlap(own[i], real[i], k), 4)}
            for i in range(real.shape[0])]
    with atomic_file(a.out) as tmp, open(tmp, "w", newline="") as f:  # never half-written
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for key in ("spearman_weights_only", "spearman_self_text", "kept_in_common_weights_only",
                "kept_in_common_self_text"):
        values = sorted(r[key] for r in rows)
        print(f"{key}: median {values[len(values) // 2]:.3f}, min {values[0]:.3f}, "
              f"max {values[-1]:.3f}")


if __name__ == "__main__":
    main()
