"""Calibration text for the methods that read activations (activation, slicegpt).

`local` (the default, and the only source offline) is the held-out slice of the local
WikiText-2 test text (`PruneContext.calibration_ids`, the last `data.calibration_tokens`
tokens): perplexity is measured on the text before it. `hub` is WikiText-2 *train* from the
Hugging Face hub, what the SliceGPT and Wanda papers calibrate on, for users with network.
Either way the first `tokens` tokens are cut into sequences of `seq_len`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import DataError
from ..errors import ConfigError
from .base import PruneContext

SOURCES = ("local", "hub")
HUB_DATASET = ("Salesforce/wikitext", "wikitext-2-raw-v1")


def hub_wikitext2_train_ids(tokenizer) -> torch.Tensor:
    """WikiText-2 train from the hub, rows joined as for test ("\\n\\n"), tokenised: [N]."""
    try:
        from datasets import load_dataset

        rows = load_dataset(*HUB_DATASET, split="train")["text"]
    except Exception as err:  # offline, no datasets package, or the hub refused
        raise DataError(
            f"cannot load WikiText-2 train ({'/'.join(HUB_DATASET)}) from the Hugging Face hub: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. Offline, use "
            "method.calibration_source=local (the held-out slice of local WikiText-2 test)"
        ) from err
    return tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[0]


@dataclass
class Calibration:
    source: str = "local"
    tokens: int = 32768
    seq_len: int = 2048

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"unknown calibration_source '{self.source}' "
                              f"(use one of {', '.join(SOURCES)})")
        if not 1 <= self.seq_len <= self.tokens:
            raise ConfigError(f"calibration_seq_len={self.seq_len} must be at least 1 and at most "
                              f"calibration_tokens={self.tokens}")

    def batches(self, ctx: PruneContext) -> torch.Tensor:
        """Token ids [n, seq_len], n = tokens // seq_len."""
        if self.source == "local":
            ids = ctx.calibration_ids()
            where = f"the held-out slice (data.calibration_tokens={ctx.calibration_tokens})"
        else:
            ids = hub_wikitext2_train_ids(ctx.tokenizer)
            where = "WikiText-2 train"
        n = self.tokens // self.seq_len
        if n * self.seq_len > ids.numel():
            raise ConfigError(f"calibration_tokens={self.tokens} is more than the {ids.numel()} "
                              f"tokens of {where}; lower method.calibration_tokens"
                              + (" or raise data.calibration_tokens" if self.source == "local"
                                 else ""))
        return ids[: n * self.seq_len].view(n, self.seq_len)

    def report(self) -> dict:
        return {"calibration_source": self.source,
                "calibration_tokens": self.tokens // self.seq_len * self.seq_len,
                "calibration_seq_len": self.seq_len}
