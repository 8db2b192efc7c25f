"""Per-layer sensitivity on SmolLM2 (the calibration-free experiment): perplexity on calibration
chunks when only layer i loses `ratio` of its FFN neurons, for several selection rules. Writes a
CSV (one row per layer x rule).

    python experiments/calibration_free/layer_sensitivity.py \
        --rules random act expected_activation --chunks 2 \
        --out experiments/calibration_free/results/layer_sensitivity.csv

Rules: random (seed 0), act (diagnostic oracle: E|h|*||d|| on 2,048 calibration tokens, see
mean_abs_activation_scores; uses data, only to explain), a `.pt` file of precomputed scores
[L, m], and any `name[:option=value,...]` scorer of the suite (yopo.methods.<name>; options
are split at commas, each value read as a Python literal, 0.05, True, None, 'abs', or else kept
as a string: abs).
"""
import argparse
import ast
import csv
import importlib
from pathlib import Path

import torch

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import (RESULTS_DIR, load, perplexity, ppl_of, random_keep, token_chunks,
                    topk_keep)
from yopo.methods.base import PruneContext


def mean_abs_activation_scores(model, adapter, chunks) -> torch.Tensor:
    """[L, m] E|h_j| * ||W_out[:, j]||: the mean absolute value over the chunks' tokens of
    neuron j's hidden activation h_j (the input of the FFN output linear, act(gate x) * up x)
    times the norm of its output column (diagnostic oracle, uses data). Not
    yopo.methods.activation.activation_scores, which is ||h_j||_2 * ||W_out[:, j]||."""
    blocks = adapter.blocks(model)
    acc = [torch.zeros(b.width) for b in blocks]
    n = [0]
    hooks = []
    for i, b in enumerate(blocks):
        def hook(mod, args, i=i):
            acc[i] += args[0].detach().abs().flatten(0, 1).sum(0)
            if i == 0:
                n[0] += args[0].shape[0] * args[0].shape[1]
        hooks.append(b.ffn_out.register_forward_pre_hook(hook))
    with torch.inference_mode():
        for s in range(0, chunks.shape[0], 2):
            model(chunks[s:s + 2], use_cache=False)
    for h in hooks:
        h.remove()
    return torch.stack([a / n[0] * b.ffn_out.weight.detach().norm(dim=0)
                        for a, b in zip(acc, blocks)])


def option_value(text: str):
    """A `--rules name:option=value` value as a Python literal (ast.literal_eval, never eval);
    text that is no literal (a bare word such as abs) stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rules", nargs="+", default=["random", "act"])
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS_DIR / "layer_sensitivity.csv"))
    p.add_argument("--layers", type=int, nargs="*", default=None, help="only these layers")
    a = p.parse_args()
    model, tok, adapter = load()
    chunks = token_chunks(tok, "calibration", a.chunks)
    L, m = len(adapter.blocks(model)), adapter.ffn_width(model)
    k = m - int(round(a.ratio * m))
    keeps = {}
    for rule in a.rules:
        if rule == "random":
            keeps[rule] = random_keep(L, m, k, 0)
        elif rule.endswith(".pt"):  # precomputed scores [L, m] saved by an experiment
            keeps[rule] = topk_keep(torch.load(rule), k)
        elif rule == "act":
            keeps[rule] = topk_keep(mean_abs_activation_scores(
                model, adapter, token_chunks(tok, "calibration", 4)), k)
        else:  # name:opt=v,opt=v -> a suite method's keep_indices
            name, _, opts = rule.partition(":")
            kwargs = {key: option_value(value)
                      for key, _, value in (kv.partition("=") for kv in opts.split(",") if kv)}
            mod = importlib.import_module(f"yopo.methods.{name}")
            cls = [c for c in vars(mod).values() if isinstance(c, type)
                   and c.__module__ == mod.__name__ and hasattr(c, "keep_indices")][0]
            keeps[rule] = cls(**kwargs).keep_indices(model, adapter, k,
                                                     PruneContext(ratio=a.ratio))[0]
    dense = perplexity(model, chunks)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["layer", "rule", "ratio", "chunks", "ppl_dense", "ppl"])
        for i in (a.layers if a.layers is not None else range(L)):
            for rule, keep in keeps.items():
                only = [keep[j] if j == i else None for j in range(L)]
                ppl = ppl_of(model, adapter, only, chunks)
                wr.writerow([i, rule, a.ratio, a.chunks, round(dense, 4), round(ppl, 4)])
                f.flush()
                print(i, rule, round(ppl, 3), flush=True)


if __name__ == "__main__":
    main()
