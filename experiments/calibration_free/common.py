"""Shared helpers of the calibration-free experiment (calibration-free FFN pruning on SmolLM2).

Loads the embedded model once, the calibration slice of WikiText-2 (never the evaluation part
unless asked), and evaluates keep sets by *masking*: zeroing a dropped neuron's FFN2 column
equals slicing it out (LLaMA FFNs have no biases), and is undone by restoring the column.
Also the pieces several scripts share: the capture file's place, the Gaussian neuron score
under a full input covariance, and the Spearman correlation.

The scripts next to this file import it as `common` (Python puts a script's own folder first
on sys.path): run them as `python experiments/calibration_free/<name>.py` from the repository
root.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from yopo.adapters import get_adapter  # noqa: E402
from yopo.config import compose  # noqa: E402
from yopo.data.wikitext import split_calibration, wikitext2_token_ids  # noqa: E402
from yopo.eval.perplexity import chunked_perplexity  # noqa: E402
from yopo.models import load_model  # noqa: E402

torch.set_num_threads(1)  # the machine is shared: one thread, run niced
CFG = compose([])
SEQLEN = 512
BATCH_SIZE = 4  # chunks per forward pass in every perplexity of the experiment

EXPERIMENT_DIR = Path(__file__).resolve().parent  # experiments/calibration_free
RESULTS_DIR = EXPERIMENT_DIR / "results"  # its tables (in git)
# FFN inputs and residual statistics on 4 calibration chunks, written by capture.py (not in git)
CAPTURE_FILE = RESULTS_DIR / "capture.pt"


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


def perplexity(model, chunks: torch.Tensor) -> float:
    """Token perplexity over chunks [n, seqlen] (yopo.eval.perplexity, BATCH_SIZE at a time)."""
    return chunked_perplexity(model, chunks, batch_size=BATCH_SIZE)["value"]


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


def gaussian_score(block, mean: torch.Tensor, cov: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """[m] E|silu(g.x) (u.x)| * ||W_out[:, j]|| for x ~ N(mean [d], cov [d, d]) (a full
    covariance), the expectation taken over the standard normal pairs z [2, samples]."""
    g, u = (lin.weight.detach().double() for lin in block.ffn_in)
    gc = g @ cov
    sd_a, sd_b = (gc * g).sum(1).sqrt(), ((u @ cov) * u).sum(1).sqrt()
    rho = ((gc * u).sum(1) / (sd_a * sd_b)).clamp(-1, 1)[:, None]
    a = (g @ mean)[:, None] + sd_a[:, None] * z[0]
    b = (u @ mean)[:, None] + sd_b[:, None] * (rho * z[0] + (1 - rho ** 2).sqrt() * z[1])
    return (F.silu(a) * b).abs().mean(1) * block.ffn_out.weight.detach().double().norm(dim=0)


def unit_trace(cov: torch.Tensor) -> torch.Tensor:
    """cov scaled to a mean diagonal of 1."""
    return cov / cov.diagonal().mean()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (scipy.stats.spearmanr: tied values share
    their average rank)."""
    return float(spearmanr(a.detach().double().cpu().numpy(),
                           b.detach().double().cpu().numpy()).statistic)
