"""Per-layer sensitivity on SmolLM2: perplexity on calibration chunks when only layer i loses
`ratio` of its FFN neurons, for several selection rules. Writes a CSV (one row per layer x rule).

    python scripts/issue8_layer_sensitivity.py --rules random act --chunks 2 --out results/issue8/layer_sensitivity.csv

Rules: random (seed 0), act (diagnostic oracle: E|h|*||d|| on 2,048 calibration tokens; uses
data, only to explain), and any `--method name:option=value,...` scorer of the suite.
"""
import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from issue8_common import *  # noqa: E402,F403


def activation_scores(model, adapter, chunks) -> torch.Tensor:
    """[L, m] E|h_j| * ||d_j|| over the given chunks (diagnostic oracle, uses data)."""
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rules", nargs="+", default=["random", "act"])
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--out", default="results/issue8/layer_sensitivity.csv")
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
            keeps[rule] = topk_keep(activation_scores(model, adapter, token_chunks(tok, "calibration", 4)), k)
        else:  # name:opt=v,opt=v -> a suite method's keep_indices
            from yopo.methods.base import PruneContext
            import importlib
            name, _, opts = rule.partition(":")
            kwargs = {kv.split("=")[0]: eval(kv.split("=")[1]) for kv in opts.split(",") if kv}
            mod = importlib.import_module(f"yopo.methods.{name}")
            cls = [c for c in vars(mod).values() if isinstance(c, type) and c.__module__ == mod.__name__
                   and hasattr(c, "keep_indices")][0]
            keeps[rule] = cls(**kwargs).keep_indices(model, adapter, k, PruneContext(ratio=a.ratio))[0]
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
