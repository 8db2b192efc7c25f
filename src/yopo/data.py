"""The local evaluation data (../shared/data by default; `paths.data_dir` / YOPO_DATA_DIR).

Files are read where they lie, never copied, and checked against the SHA-256 sums published in
the data folder's README. WikiText-2 test is split once, here, into a calibration slice (its
last `calibration_tokens` tokens, for methods that need data and for tuning) and the rest, on
which perplexity is measured, so no method is scored on text it saw.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import YopoError
from .io import file_sha256

# path below the data dir -> sha256, as listed in the data README (sections 1-5)
CHECKSUMS = {
    "piqa/valid.jsonl": "93503cc97c679e459b065c3d13e848282e44b2a25213985bed3e5d458abef72d",
    "piqa/valid-labels.lst": "b4192dc3a2a0363d9d60ccf79800cbbe2f32ebb17726efdde6970e0b8131bceb",
    "winogrande/validation.jsonl":
        "69f3d7f3a900d775339b04c7de672609c40fca573e50f594f2ae66d8782505be",
    "hellaswag/hellaswag_val_full.txt.bz2":
        "50b637899e4263c2bc456c2dc726c95d2c8cd8e2a552ea5bd7719ce3cb03fe5b",
    "arc/ARC-Easy-Test.jsonl": "ce32a0774b4beb1977d2c6b16dda5dd2b24fdc9c7f506882c452678676bd09be",
    "arc/ARC-Challenge-Test.jsonl":
        "9fa8ffb3e3a1f88cb302d53dd95aae81e39209ad9bcf974376b319d8fd35717c",
    "wikitext2/wiki.test.raw": "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",
}


class DataError(YopoError):
    """Missing or altered evaluation data."""


def data_file(data_dir: str | Path, relative: str) -> Path:
    """The verified path of one data file; a clear error if it is missing or differs."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"data dir {data_dir} does not exist; set paths.data_dir=<folder> or "
                        "YOPO_DATA_DIR to the folder holding piqa/, winogrande/, hellaswag/, "
                        "arc/ and wikitext2/ (see its README), or use eval.source=hub")
    path = data_dir / relative
    if not path.is_file():
        raise DataError(f"data file {path} is missing; the data dir must hold {relative} "
                        "as described in the data README")
    expected = CHECKSUMS.get(relative)
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise DataError(f"data file {path} has sha256 {actual}, but the data README gives "
                            f"{expected}: the file is altered or a different version; restore it")
    return path


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
