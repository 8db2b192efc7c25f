"""How long PruneNet takes to train its policy and prune: the fast spectrum path against the
straightforward one (gather the kept rows, float32 SVD), timed in the same process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_policy.py             # SmolLM2, 20 episodes
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_policy.py --case llama7b  # 7B shapes

--case smollm2: the embedded model (30 layers, FFN1 [1536, 576]), full training at ratio 0.3.
--case llama7b: LLaMA-2-7B-shaped FFN1 matrices [11008, 4096] in bfloat16, random with
  log-normal row scales (row norms spread like a trained model's, ~e^(+-0.5)); on a CPU by
  default 2 layers and 1 episode (a 32-layer episode takes over an hour on 2 shared cores),
  extrapolated to 32 layers; on a GPU all 32 layers and 20 episodes, the straightforward path
  for --reference-episodes episodes (default 1). It also times one solve's parts.
Every row: the penalty's setup (dense spectra, full Grams), policy training wall time (setup
included) and per episode (setup excluded), the process CPU time of the row (all threads; on a
quiet machine the fast path's wall time is about this divided by its parallel workers), pruning
(final scores, top-k mask, its KS; for SmolLM2 also slicing the model), the best KS and
whether the final keep sets equal the reference's (only when both trained the same number of
episodes). On a GPU also the peak memory above the weights. The load average is printed with
the table: other work on shared cores slows every row, so compare rows of one run.
"""
from __future__ import annotations

import argparse
import copy
import os
import time
from contextlib import nullcontext
from types import SimpleNamespace

import torch
import torch._dynamo  # noqa: F401  imported by the first optimizer step (3-8 s here): not timed

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.methods.base import PruneContext, kept_width
from yopo.methods.prunenet.method import PruneNet
from yopo.models import load_model
from yopo.methods.prunenet.spectrum import single_threaded_torch

LLAMA7B = dict(layers=32, rows=11008, cols=4096)


class StackedLayers:
    """The adapter interface PruneNet.keep_indices reads (blocks(model)[i].ffn1), over plain
    matrices, for layers that are not in a model."""

    def __init__(self, layers: list[torch.Tensor]):
        self.layers = layers

    def blocks(self, _model):
        return [SimpleNamespace(ffn1=w) for w in self.layers]


def llama7b_layers(count: int, device: str, seed: int = 0, rows: int = LLAMA7B["rows"],
                   cols: int = LLAMA7B["cols"]) -> list[torch.Tensor]:
    """[rows, cols] ([11008, 4096]) bfloat16 matrices, N(0, 0.02^2) entries times a log-normal
    scale per row."""
    gen = torch.Generator(device=device).manual_seed(seed)
    layers = []
    for _ in range(count):
        scale = torch.exp(0.5 * torch.randn(rows, 1, generator=gen, device=device))
        w = torch.randn(rows, cols, generator=gen, device=device)
        layers.append((0.02 * scale * w).bfloat16())
    return layers


def time_components(layer: torch.Tensor, k: int, device: str, repeats: int) -> dict[str, float]:
    """Median seconds of one solve's parts: the Gram of the m - k dropped rows (float64,
    subtracted from G_full), the eigen-solve of the [d, d] result, and the reference's svdvals
    of the k kept rows (float32)."""
    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    w = layer.to(device)
    full = w.double().mT @ w.double()
    dropped = w[k:].double()
    gram = torch.addmm(full, dropped.mT, dropped, alpha=-1.0)
    return {"gram_s": timed(lambda: torch.addmm(full, dropped.mT, dropped, alpha=-1.0)),
            "eigvalsh_s": timed(lambda: torch.linalg.eigvalsh(gram)),
            "svdvals_s": timed(lambda: torch.linalg.svdvals(w[:k].float()))}


def run(label: str, method: PruneNet, model, adapter, k: int, ctx: PruneContext,
        slice_model: bool) -> dict:
    device = torch.device(ctx.device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    load_before = os.getloadavg()[0]
    # The penalty's setup (dense spectra, full Grams) once alone, to split it from the episodes;
    # keep_indices then does it again as part of its training time.
    started = time.perf_counter()
    method.penalty([b.ffn1 for b in adapter.blocks(model)], k, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    setup_s = time.perf_counter() - started
    cpu_started, started = time.process_time(), time.perf_counter()
    keep, report = method.keep_indices(model, adapter, k, ctx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    total, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    slice_s = None
    if slice_model:
        pruned = copy.deepcopy(model)
        started = time.perf_counter()
        adapter.slice_ffn(pruned, keep)
        slice_s = time.perf_counter() - started
    return {"label": label, "episodes": method.episodes, "setup_s": setup_s,
            "train_s": report["policy_train_seconds"],
            "prune_s": total - report["policy_train_seconds"], "slice_s": slice_s,
            "cpu_s": cpu_s, "history": report["ks_history"], "ks_best": report["ks_best_train"],
            "ks_final": report["ks_mean_dense_vs_pruned"],
            "keep": torch.stack(keep),
            "peak_gib": ((torch.cuda.max_memory_allocated(device) - base) / 2**30
                         if device.type == "cuda" else None),
            "load": (load_before, os.getloadavg()[0])}


def per_episode(row: dict) -> float:
    """Training seconds per episode, setup excluded (it includes the final state's check)."""
    return (row["train_s"] - row["setup_s"]) / row["episodes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("smollm2", "llama7b"), default="smollm2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--episodes", type=int, help="fast path (default 20; llama7b on CPU 1)")
    parser.add_argument("--reference-episodes", type=int,
                        help="straightforward path (default: --episodes; llama7b on GPU 1)")
    parser.add_argument("--layers", type=int, help="llama7b layers (default 32; CPU 2)")
    parser.add_argument("--layer-batch", type=int, default=4)
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")

    if args.case == "smollm2":
        cfg = compose(["model=smollm2_135m"])
        model, _ = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
        model.to(args.device)
        adapter, num_layers = get_adapter(model), model.config.num_hidden_layers
        width = adapter.ffn_width(model)
        episodes = args.episodes or 20
    else:
        num_layers = args.layers or (LLAMA7B["layers"] if cuda else 2)
        adapter, model = StackedLayers(llama7b_layers(num_layers, args.device)), None
        width = LLAMA7B["rows"]
        episodes = args.episodes or (20 if cuda else 1)
    reference_episodes = args.reference_episodes or (1 if cuda and args.case == "llama7b"
                                                     else episodes)
    k = kept_width(width, args.ratio)
    ctx = PruneContext(ratio=args.ratio, seed=0, device=args.device)

    rows = [run("fast: gram, G_full - G_dropped, parallel eigh",
                PruneNet(episodes=episodes, layer_batch=args.layer_batch), model, adapter, k, ctx,
                slice_model=model is not None)]
    if not args.skip_reference:
        rows.append(run("straightforward: gather kept rows, svdvals",
                        PruneNet(episodes=reference_episodes, spectrum="svd",
                                 layer_batch=num_layers), model, adapter, k, ctx,
                        slice_model=model is not None))

    if args.case == "llama7b":
        with nullcontext() if cuda else single_threaded_torch():  # as PruneNet runs them
            parts = time_components(adapter.layers[0], k, args.device, repeats=3 if cuda else 1)
        solves = (1 + PruneNet().samples) * LLAMA7B["layers"]
        print(f"one solve: Gram of {width - k} dropped rows {parts['gram_s'] * 1e3:.0f} ms + "
              f"eigvalsh [{LLAMA7B['cols']}] {parts['eigvalsh_s'] * 1e3:.0f} ms (float64); "
              f"reference svdvals of {k} rows {parts['svdvals_s'] * 1e3:.0f} ms (float32); "
              f"{solves} solves per 32-layer episode (one thread or stream each, before overlap)")

    print(f"\ncase {args.case}: {num_layers} layers, FFN1 [{width}, "
          f"{adapter.blocks(model)[0].ffn1.shape[1]}], keep {k} (ratio {args.ratio}), "
          f"{args.device}, torch threads {torch.get_num_threads()}, "
          f"samples/episode {PruneNet().samples}")
    header = (f"{'path':46} {'episodes':>8} {'setup s':>7} {'train s':>8} {'s/episode':>9} "
              f"{'CPU s':>7} "
              f"{'prune s':>8} "
              f"{'slice s':>7} {'KS best':>8} {'KS final':>8} {'same mask':>9} {'peak GiB':>8} "
              f"{'load avg':>11}")
    print(header)
    print("-" * len(header))
    reference = rows[-1] if len(rows) > 1 else None
    for row in rows:
        same = ("-" if reference is None or row is reference
                or row["episodes"] != reference["episodes"]
                else str(torch.equal(row["keep"].sort(-1).values,
                                     reference["keep"].sort(-1).values)))
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(f"{row['label']:46} {row['episodes']:>8} {row['setup_s']:>7.1f} "
              f"{row['train_s']:>8.1f} {per_episode(row):>9.2f} {row['cpu_s']:>7.0f} "
              f"{row['prune_s']:>8.2f} "
              f"{fmt(row['slice_s'], '.2f'):>7} {row['ks_best']:>8.4f} {row['ks_final']:>8.4f} "
              f"{same:>9} {fmt(row['peak_gib'], '.2f'):>8} "
              f"{row['load'][0]:>5.1f}>{row['load'][1]:<5.1f}")
    if args.case == "llama7b" and num_layers != LLAMA7B["layers"]:
        scale = LLAMA7B["layers"] / num_layers
        for row in rows:
            setup, episode = row["setup_s"] * scale, per_episode(row) * scale
            print(f"  {row['label']}: 32 layers ~ {setup:.0f} s setup + {episode:.0f} s per "
                  f"episode, ~{(setup + 20 * episode) / 60:.0f} min for 20 episodes "
                  "(linear in layers)")
    if reference is not None and reference["episodes"] == rows[0]["episodes"]:
        pairs = list(zip(rows[0]["history"], reference["history"]))
        same = next((i for i, (a, b) in enumerate(pairs) if abs(a - b) > 1e-9), len(pairs))
        print(f"greedy KS per episode equal for the first {same} of {len(pairs)} evaluations "
              "(the paths differ by float32 rounding of the reference's SVD; a rounding that "
              "flips one KS comparison changes a reward and the runs part)")
    if reference is not None:
        print(f"speedup per episode: {per_episode(reference) / per_episode(rows[0]):.1f}x; "
              f"load average now {os.getloadavg()}")


if __name__ == "__main__":
    main()
