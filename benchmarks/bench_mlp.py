"""How close the pruned model's speed comes to what removing FFN width can give at best.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_mlp.py                   # SmolLM2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_mlp.py --case llama7b    # 7B widths

Models, all in one process and timed interleaved (dense, pruned, ..., dense, ...) with warm-up
and the median of repeats by yopo.eval.throughput.measure_throughput: the dense model and FFN
ratio 0.3 with the kept width rounded to each --round-to (1 keeps 1075 of SmolLM2's 1536,
64 or 128 keep 1024). Which neurons are kept does not matter for speed: a random set. They are
timed twice, like with like: first as they are, then all of them, the dense model included,
with gate and up fused into one [2k, d] product (yopo.modeling.fused_mlp, in place), as the
pipeline fuses both models (`inference.fuse_gate_up`); each pruned model's speedup is over the
dense model of its own pass.

Ideal speedup = 1 / (1 - r f): r = the achieved FFN ratio, f = the FFN share of the per-token
cost of all nn.Linear layers (LM head included), by FLOPs for prefill and by weight bytes for
decode (yopo.eval.throughput.ideal_speedup, read from the unfused models; fusing changes neither
FLOPs nor bytes, so it is the ideal of both passes); attention over the context is not counted,
so long prompts fall short of it. Printed: tokens/s, measured speedup over dense, ideal, and
their ratio.

--case llama7b: a LLaMA-2-7B-shaped model (hidden 4096, FFN 11008, 32 heads, vocab 32000,
untied head) with random weights and --layers decoder layers (CPU default 1: the head then
weighs more in f than in the real 32-layer model; GPU default 32, bfloat16).
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.eval.throughput import ideal_speedup, measure_throughput
from yopo.methods.base import kept_width
from yopo.models import load_model
from yopo.modeling.fused_mlp import fuse_gate_up

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


LLAMA7B = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000)


def llama7b_shaped(layers: int, dtype: torch.dtype, device: str, **shape) -> torch.nn.Module:
    """A LLaMA-2-7B-shaped decoder (or another `shape`: LlamaConfig keys) with random weights,
    built on `device`."""
    config = LlamaConfig(**{**LLAMA7B, **shape}, num_hidden_layers=layers,
                         max_position_embeddings=4096, tie_word_embeddings=False)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype).eval()


def pruned_copy(dense: torch.nn.Module, k: int, seed: int = 0) -> torch.nn.Module:
    adapter = get_adapter(dense)
    width, layers = adapter.ffn_width(dense), len(adapter.decoder_layers(dense))
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(dense)
    adapter.slice_ffn(model, [torch.randperm(width, generator=gen)[:k] for _ in range(layers)])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("smollm2", "llama7b"), default="smollm2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, help="default: bfloat16 on GPU, else float32")
    parser.add_argument("--layers", type=int, help="llama7b depth (default 32 on GPU, else 1)")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 64, 128])
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        help="default GPU 1 16 64, CPU 1 4 16")
    parser.add_argument("--prompt-tokens", type=int, help="default GPU 512, CPU 64")
    parser.add_argument("--decode-tokens", type=int, help="default GPU 64, CPU 16")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    dtype = DTYPES[args.dtype or ("bfloat16" if cuda else "float32")]
    batch_sizes = args.batch_sizes or ([1, 16, 64] if cuda else [1, 4, 16])
    prompt_tokens = args.prompt_tokens or (512 if cuda else 64)
    decode_tokens = args.decode_tokens or (64 if cuda else 16)

    if args.case == "smollm2":
        cfg = compose(["model=smollm2_135m"])
        dense, _ = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
        dense = dense.to(args.device, dtype).eval()
    else:
        dense = llama7b_shaped(args.layers or (32 if cuda else 1), dtype, args.device)
    adapter = get_adapter(dense)
    width = adapter.ffn_width(dense)

    models, ideals = {"dense": dense}, {}
    for k in sorted({kept_width(width, args.ratio, r) for r in args.round_to}, reverse=True):
        rounds = "/".join(str(r) for r in args.round_to if kept_width(width, args.ratio, r) == k)
        pruned = pruned_copy(dense, k)
        models[f"k={k} (round_to {rounds})"] = pruned
        ideals[f"k={k} (round_to {rounds})"] = ideal_speedup(dense, pruned, adapter)

    print(f"\ncase {args.case}: {dense.config.num_hidden_layers} layers, hidden "
          f"{dense.config.hidden_size}, FFN {width}, ratio {args.ratio}, {args.device} {dtype}, "
          f"torch threads {torch.get_num_threads()}, prompt {prompt_tokens} + decode "
          f"{decode_tokens} tokens, warm-up {args.warmup}, median of {args.repeats}; "
          f"load average {os.getloadavg()}")
    any_ideal = next(iter(ideals.values()))
    print(f"FFN share f: {any_ideal['ffn_share']['flops']:.3f} of FLOPs, "
          f"{any_ideal['ffn_share']['weight_bytes']:.3f} of weight bytes (LM head included)")
    header = (f"{'batch':>5} {'model':34} {'prefill tok/s':>13} {'x dense':>7} {'ideal':>6} "
              f"{'of ideal':>8} {'decode tok/s':>12} {'x dense':>7} {'ideal':>6} {'of ideal':>8}")
    print(header)
    print("-" * len(header))
    for suffix in ("", " fused"):
        if suffix:
            for model in models.values():
                fuse_gate_up(model)
        settings = measure_throughput(models, batch_sizes, prompt_tokens, decode_tokens,
                                      warmup=args.warmup, repeats=args.repeats)
        for setting in settings:
            base = setting["dense"]
            for name in models:
                row = setting[name]
                cells = []
                for phase in ("prefill", "decode"):
                    rate = row[f"{phase}_tokens_per_s"]
                    width_ = 13 if phase == "prefill" else 12
                    if name == "dense":
                        cells.append(f"{rate:>{width_}.1f} {'':>7} {'':>6} {'':>8}")
                        continue
                    speedup = rate / base[f"{phase}_tokens_per_s"]
                    ideal = ideals[name][phase]
                    cells.append(f"{rate:>{width_}.1f} {speedup:>7.3f} {ideal:>6.3f} "
                                 f"{speedup / ideal:>8.2f}")
                print(f"{setting['batch_size']:>5} {name + suffix:34} {' '.join(cells)}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
