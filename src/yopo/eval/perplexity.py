"""WikiText-2 perplexity as pruning papers measure it (SparseGPT, Wanda, SliceGPT).

The test text (yopo.data.wikitext.wikitext2_text: rows joined with "\\n\\n") is tokenised
once; the last `calibration_tokens` tokens are held out for calibration
(yopo.data.wikitext.split_calibration) and the rest (`text: evaluation`, the default) is cut into
non-overlapping chunks of `seqlen` tokens (a remainder shorter than seqlen is dropped).
Perplexity = exp(mean next-token NLL over every predicted token of every chunk), each chunk read
from scratch. This is *token* perplexity for the model's own tokenizer, not
lm-eval's `wikitext` task (word perplexity over documents with a rolling window): the numbers of
the two are not comparable. `text: calibration` scores the held-out slice instead: what tuning
sweeps read, so that no choice is made on the evaluation text.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from ..data.wikitext import split_calibration, wikitext2_token_ids
from ..errors import ConfigError
from ..progress import progress


def chunk_ids(ids: torch.Tensor, seqlen: int, max_chunks: int | None = None) -> torch.Tensor:
    """Non-overlapping chunks [n, seqlen] of the 1-D ids (the remainder is dropped)."""
    n = ids.numel() // seqlen
    if max_chunks is not None:
        n = min(n, int(max_chunks))
    if n < 1:
        raise ConfigError(f"perplexity: {ids.numel()} tokens make no chunk of seqlen={seqlen}; "
                          "lower eval.perplexity.seqlen")
    return ids[: n * seqlen].view(n, seqlen)


@torch.inference_mode()
def chunked_perplexity(model, chunks: torch.Tensor, batch_size: int = 1) -> dict[str, Any]:
    """exp(mean NLL) of `model` over chunks [n, seqlen], each predicting its tokens 1..seqlen-1."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and chunks.shape[1] > limit:
        raise ConfigError(f"perplexity: seqlen={chunks.shape[1]} exceeds the model's "
                          f"{limit} positions; set eval.perplexity.seqlen<={limit}")
    device = next(model.parameters()).device
    nll_sum, predicted = 0.0, 0
    for start in progress(range(0, chunks.shape[0], batch_size), desc="perplexity batches"):
        batch = chunks[start:start + batch_size].to(device)  # [b, seqlen]
        logits = model(batch, use_cache=False).logits[:, :-1]  # [b, seqlen-1, vocab]
        nll_sum += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(),
                                   reduction="sum").item()
        predicted += batch[:, 1:].numel()
    return {"value": math.exp(nll_sum / predicted), "chunks": int(chunks.shape[0]),
            "seqlen": int(chunks.shape[1]), "tokens": predicted}


TEXTS = ("evaluation", "calibration")


def check_text(text: str) -> str:
    """`eval.perplexity.text`, or a one-line error naming the two it may be."""
    if text not in TEXTS:
        raise ConfigError(f"eval.perplexity.text={text} is unknown: use evaluation (the text "
                          "after the calibration slice) or calibration (the slice, for tuning)")
    return text


def wikitext2_perplexity(model, tokenizer, data_dir, calibration_tokens: int, seqlen: int = 2048,
                         max_chunks: int | None = None, batch_size: int = 1,
                         text: str = "evaluation") -> dict[str, Any]:
    """Token perplexity on the evaluation part of WikiText-2 test (or, `text="calibration"`,
    on the held-out calibration slice): {value, chunks, seqlen, tokens (predicted),
    calibration_tokens (held out), text, seconds}."""
    check_text(text)
    started = time.perf_counter()
    calibration, evaluation = split_calibration(wikitext2_token_ids(tokenizer, data_dir),
                                                calibration_tokens)
    ids = evaluation if text == "evaluation" else calibration
    result = chunked_perplexity(model, chunk_ids(ids, seqlen, max_chunks), batch_size)
    return {**result, "calibration_tokens": calibration_tokens, "text": text,
            "seconds": time.perf_counter() - started}
