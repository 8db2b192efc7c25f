"""Speed of the dense against the pruned model, and the speedup FFN pruning can give at best.

Measured: prefill tokens/s (one forward over a [batch, prompt_tokens] prompt) and decode tokens/s
(`decode_tokens` greedy steps of one token per sequence with the KV cache), for both models in
the same process on the same random prompts, interleaved (dense, pruned, dense, ...) so that
drift in the machine's load hits both; `warmup` rounds are discarded and the median of `repeats`
is reported. On CUDA every timing is bracketed by torch.cuda.synchronize.

Ideal: a token's cost is dominated by its matrix products, so with f = the FFN share of the
per-token cost and r = the fraction of FFN neurons removed, the speedup is 1 / (1 - r f).
Compute-bound prefill is weighed by FLOPs (2 * in * out per nn.Linear, the LM head included,
and per shortcut matrix S [d, d_out] that a SliceGPT norm multiplies the stream by), memory-bound
decode by the bytes of those weights. Attention over the context (whose cost grows
with its length) is not counted, so measured speedups fall short of the ideal as prompts grow.

Peak memory: on CUDA torch.cuda.max_memory_allocated over each measurement; on CPU there is no
allocator counter, so it is reported as weights (parameters + buffers) + KV cache bytes at the
end of decoding, i.e. without activations and allocator slack.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from ..adapters import FFNAdapter
from ..modeling.modeling_yopo_sliced import SlicedNorm
from ..progress import progress


def linear_cost(model: nn.Module, adapter: FFNAdapter) -> dict[str, dict[str, float]]:
    """Per-token cost of the model's matrix products (nn.Linear layers and SliceGPT's shortcut
    matrices), FFN part and whole: {"flops": {"ffn", "total"}, "weight_bytes": {"ffn", "total"}}."""
    ffn_ids = {id(lin) for block in adapter.blocks(model)
               for lin in (*block.ffn_in, block.ffn_out)}
    cost = {"flops": {"ffn": 0.0, "total": 0.0}, "weight_bytes": {"ffn": 0.0, "total": 0.0}}
    for module in model.modules():
        if isinstance(module, nn.Linear):
            flops = 2.0 * module.in_features * module.out_features
        elif isinstance(module, SlicedNorm) and module.shortcut is not None:
            # the stream that bypasses the branch is carried across bases: x [d] @ S [d, d_out]
            flops = 2.0 * module.shortcut.numel()
        else:
            continue
        nbytes = float(sum(p.numel() * p.element_size() for p in module.parameters(recurse=False)))
        for kind, value in (("flops", flops), ("weight_bytes", nbytes)):
            cost[kind]["total"] += value
            if id(module) in ffn_ids:
                cost[kind]["ffn"] += value
    return cost


def ffn_neurons(model: nn.Module, adapter: FFNAdapter) -> int:
    """FFN neurons summed over layers (per-layer widths may differ)."""
    return sum(block.width for block in adapter.blocks(model))


def ideal_speedup(dense: nn.Module, pruned: nn.Module, adapter: FFNAdapter) -> dict[str, Any]:
    """cost(dense) / cost(pruned) by FLOPs (prefill) and weight bytes (decode); with a uniform
    FFN ratio r this is 1 / (1 - r f). Also reports f (FFN share of the dense cost) and r
    (the fraction of all layers' FFN neurons removed)."""
    before, after = linear_cost(dense, adapter), linear_cost(pruned, adapter)
    return {
        "prefill": before["flops"]["total"] / after["flops"]["total"],
        "decode": before["weight_bytes"]["total"] / after["weight_bytes"]["total"],
        "ffn_share": {kind: before[kind]["ffn"] / before[kind]["total"] for kind in before},
        "ffn_ratio": 1.0 - ffn_neurons(pruned, adapter) / ffn_neurons(dense, adapter),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cache_bytes(cache) -> int:
    """Bytes held by a transformers KV cache (its key/value tensors)."""
    tensors = [t for layer in getattr(cache, "layers", []) for t in
               (getattr(layer, "keys", None), getattr(layer, "values", None))
               if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def model_bytes(model: nn.Module) -> int:
    """Parameters (tied ones once) and buffers."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


@torch.inference_mode()
def time_generation(model: nn.Module, prompt: torch.Tensor, decode_tokens: int
                    ) -> dict[str, float]:
    """Prefill `prompt` [b, p], then decode `decode_tokens` greedy tokens with the KV cache."""
    device = next(model.parameters()).device
    prompt = prompt.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    out = model(prompt, use_cache=True)
    _sync(device)
    prefilled = time.perf_counter()
    cache, token = out.cache, out.logits[:, -1:].argmax(-1)  # token [b, 1]
    for _ in range(decode_tokens):
        out = model(token, cache=cache, use_cache=True)
        cache, token = out.cache, out.logits[:, -1:].argmax(-1)
    _sync(device)
    decoded = time.perf_counter()
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else model_bytes(model) + _cache_bytes(cache))
    return {"prefill_s": prefilled - started, "decode_s": decoded - prefilled,
            "peak_memory_bytes": peak}


def measure_throughput(models: dict[str, nn.Module], batch_sizes, prompt_tokens: int,
                       decode_tokens: int, warmup: int = 1, repeats: int = 5, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """For each batch size: {batch_size, prompt_tokens, decode_tokens, <name>: {prefill_tokens_per_s,
    decode_tokens_per_s, peak_memory_bytes}} for every model in `models` (timed interleaved)."""
    if repeats < 1 or warmup < 0 or prompt_tokens < 1 or decode_tokens < 1:
        raise ValueError("throughput needs repeats >= 1, warmup >= 0, prompt/decode tokens >= 1")
    vocab = min(m.config.vocab_size for m in models.values())
    generator = torch.Generator().manual_seed(seed)
    settings = []
    bar = progress(desc="throughput (rounds x models)",
                   total=len(batch_sizes) * (warmup + repeats) * len(models))
    for batch in batch_sizes:
        prompt = torch.randint(vocab, (int(batch), prompt_tokens), generator=generator)
        runs = {name: [] for name in models}
        for round_ in range(warmup + repeats):
            for name, model in models.items():
                timing = time_generation(model, prompt, decode_tokens)
                bar.update()
                if round_ >= warmup:
                    runs[name].append(timing)
        setting = {"batch_size": int(batch), "prompt_tokens": prompt_tokens,
                   "decode_tokens": decode_tokens}
        for name, timings in runs.items():
            prefill = statistics.median(t["prefill_s"] for t in timings)
            decode = statistics.median(t["decode_s"] for t in timings)
            setting[name] = {"prefill_tokens_per_s": batch * prompt_tokens / prefill,
                             "decode_tokens_per_s": batch * decode_tokens / decode,
                             "peak_memory_bytes": max(t["peak_memory_bytes"] for t in timings)}
        settings.append(setting)
    bar.close()
    return settings


def compare_throughput(dense: nn.Module, pruned: nn.Module, adapter: FFNAdapter, batch_sizes,
                       prompt_tokens: int, decode_tokens: int, warmup: int = 1, repeats: int = 5,
                       ideal: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measured dense and pruned speed per batch size, the measured speedups and the ideal ones
    (`ideal`: ideal_speedup of the two, computed beforehand where the models' layout has
    changed since, e.g. fused gate/up products the adapter does not read)."""
    device = next(pruned.parameters()).device
    settings = measure_throughput({"dense": dense, "pruned": pruned}, batch_sizes, prompt_tokens,
                                  decode_tokens, warmup, repeats)
    for s in settings:
        s["speedup"] = {phase: s["pruned"][f"{phase}_tokens_per_s"] / s["dense"][f"{phase}_tokens_per_s"]
                        for phase in ("prefill", "decode")}
    return {"settings": settings,
            "ideal_speedup": ideal or ideal_speedup(dense, pruned, adapter),
            "device": str(device), "threads": torch.get_num_threads(), "warmup": warmup,
            "repeats": repeats,
            "peak_memory_method": ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                                   else "parameters + buffers + KV cache bytes (no activations)")}
