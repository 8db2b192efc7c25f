"""WikiText-2: the local test text (split once, here, into a calibration slice, its last
`calibration_tokens` tokens, for methods that need data and for tuning, and the rest, on which
perplexity is measured, so no method is scored on text it saw) and the train split from the
Hugging Face hub, the one hub loader (calibration text and recovery fine-tuning read it).
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import DataError, data_file

HUB_DATASET = ("Salesforce/wikitext", "wikitext-2-raw-v1")  # the `datasets` id of WikiText-2 raw


def wikitext2_text(data_dir: str | Path) -> str:
    """The raw WikiText-2 test text joined the way pruning papers do: "\\n\\n".join(rows) over
    the rows of HF `wikitext-2-raw-v1` test. Those rows are the file's lines with their newline,
    and "" where the file has a blank (" ") line."""
    lines = data_file(data_dir, "wikitext2/wiki.test.raw").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file ends with a newline: no row after it
    return "\n\n".join(line + "\n" if line.strip() else "" for line in lines)


def wikitext2_token_ids(tokenizer, data_dir: str | Path) -> torch.Tensor:
    """The joined test text tokenised once: LongTensor [N]."""
    return tokenizer(wikitext2_text(data_dir), return_tensors="pt").input_ids[0]


def split_calibration(ids: torch.Tensor, calibration_tokens: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration, evaluation) token ids: the last `calibration_tokens` tokens are held out
    for calibration and tuning, perplexity is measured on everything before them."""
    if not 0 <= calibration_tokens < ids.numel():
        raise DataError(f"calibration_tokens={calibration_tokens} must be below the "
                        f"{ids.numel()} tokens of the text")
    cut = ids.numel() - calibration_tokens
    return ids[cut:], ids[:cut]


def hub_wikitext2_train_ids(tokenizer, offline_remedy: str) -> torch.Tensor:
    """WikiText-2 train from the hub, rows joined as for test ("\\n\\n"), tokenised: [N].
    `offline_remedy` tells the caller's user what to use instead when the hub cannot serve it."""
    try:
        from datasets import load_dataset

        rows = load_dataset(*HUB_DATASET, split="train")["text"]
    except Exception as err:  # offline, no datasets package, or the hub refused
        raise DataError(
            f"cannot load WikiText-2 train ({'/'.join(HUB_DATASET)}) from the Hugging Face hub: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}. "
            f"{offline_remedy}") from err
    return tokenizer("\n\n".join(rows), return_tensors="pt").input_ids[0]
