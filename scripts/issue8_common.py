"""Shared helpers for the issue-8 experiments (calibration-free pruning on SmolLM2).

Loads the embedded model once, the calibration slice of WikiText-2 (never the evaluation part
unless asked), and evaluates keep sets by *masking*: zeroing a dropped neuron's FFN2 column
equals slicing it out (LLaMA FFNs have no biases), and is undone by restoring the column.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.models import load_model

torch.set_num_threads(1)  # the machine is shared: one thread, run niced
CFG = compose([])
SEQLEN = 512


def load():
    model, tok = load_model(CFG.model, Path(CFG.paths.cache_dir) / "models")
    return model, tok, get_adapter(model)


def token_chunks(tok, part: str = "calibration", n: int = 16) -> torch.Tensor:
    """[n, 512] chunks of the calibration slice (tuning) or of the evaluation part (final)."""
    ids = wikitext2_token_ids(tok, CFG.data.dir)
    cal, ev = split_calibration(ids, int(CFG.data.calibration_tokens))
    src = cal if part == "calibration" else ev
    m = src.numel() // SEQLEN
    return src[: min(n, m) * SEQLEN].view(-1, SEQLEN)[:n]


@torch.inference_mode()
def perplexity(model, chunks: torch.Tensor, batch: int = 4) -> float:
    nll, count = 0.0, 0
    for s in range(0, chunks.shape[0], batch):
        b = chunks[s:s + batch]
        logits = model(b, use_cache=False).logits[:, :-1]
        nll += F.cross_entropy(logits.float().flatten(0, 1), b[:, 1:].flatten(),
                               reduction="sum").item()
        count += b[:, 1:].numel()
    return math.exp(nll / count)


@contextmanager
def masked(model, adapter, keep: list[torch.Tensor | None]):
    """Temporarily zero the FFN2 columns of neurons not in keep[i] (None = layer untouched)."""
    saved = []
    blocks = adapter.blocks(model)
    with torch.no_grad():
        for block, idx in zip(blocks, keep):
            if idx is None:
                saved.append(None)
                continue
            w = block.ffn_out.weight  # [d, m]
            drop = torch.ones(w.shape[1], dtype=torch.bool)
            drop[idx] = False
            saved.append((drop, w[:, drop].clone()))
            w[:, drop] = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for block, s in zip(blocks, saved):
                if s is not None:
                    block.ffn_out.weight[:, s[0]] = s[1]


def ppl_of(model, adapter, keep, chunks) -> float:
    with masked(model, adapter, keep):
        return perplexity(model, chunks)


def random_keep(num_layers: int, m: int, k: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(m, generator=g)[:k] for _ in range(num_layers)]


def topk_keep(scores: torch.Tensor, k: int) -> list[torch.Tensor]:
    """scores [L, m] -> per-layer indices of the k largest."""
    return list(scores.topk(k, dim=-1).indices)
