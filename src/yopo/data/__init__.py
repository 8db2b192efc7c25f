"""The local evaluation data (../shared/data by default; `paths.data_dir` / YOPO_DATA_DIR), and
the text the methods read.

Files are read where they lie, never copied, and checked against the SHA-256 sums published in
the data folder's README (`data_file`). `wikitext` holds the WikiText-2 text (test, split once
into the calibration slice and the perplexity text; train from the hub), `calibration` the
calibration text of the methods that read activations (local slice, hub, or self-generated).
The zero-shot task files are read by `yopo.eval.tasks.local_data`.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import YopoError
from ..io import file_sha256

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


def hub_offline(*variables: str) -> bool:
    """Whether the Hugging Face hub is switched off by any of `variables` (default:
    HF_HUB_OFFLINE or HF_DATASETS_OFFLINE, what dataset loading obeys)."""
    return any(os.environ.get(var, "0") not in ("0", "", "false", "False")
               for var in variables or ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
