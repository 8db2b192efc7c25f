"""Loaders for the local benchmark files, named by the task YAMLs beside this module
(`custom_dataset: !function yopo.eval.tasks.local_data.<task>`).

lm-eval calls each as `loader(**metadata, **dataset_kwargs)`; yopo.eval.zeroshot puts the data
dir into the metadata. Every file is checked against its published sha256 (yopo.data.data_file)
and read where it lies; each loader returns the split lm-eval's own config of the task reads, with
the fields of the Hugging Face dataset that config was written for, so lm-eval's prompts, choices
and metrics apply unchanged.
"""
from __future__ import annotations

import bz2
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ...data import DataError, data_file

if TYPE_CHECKING:
    from datasets import DatasetDict

# The data files each task reads (paths below the data dir; checksums in yopo.data.CHECKSUMS).
FILES = {
    "piqa": ("piqa/valid.jsonl", "piqa/valid-labels.lst"),
    "winogrande": ("winogrande/validation.jsonl",),
    "hellaswag": ("hellaswag/hellaswag_val_full.txt.bz2",),
    "arc_easy": ("arc/ARC-Easy-Test.jsonl",),
    "arc_challenge": ("arc/ARC-Challenge-Test.jsonl",),
}
HELLASWAG_LINES_PER_EXAMPLE = 6  # context, gold label, four endings (data README section 3)
# The last sentence of a HellaSwag context: text after the last ". " / "! " / "? " (optionally
# behind a closing quote or bracket), or the whole context when there is no sentence end.
_LAST_SENTENCE = re.compile(r"^(?:(.*[.!?][\"')]?) )?(\S.*)$", re.DOTALL)


def _split(name: str, docs: list[dict]) -> DatasetDict:
    """One split as lm-eval loads it. `datasets` (lm-eval's dependency) is imported here: only
    zero-shot evaluation needs it, and the GPU machine has none."""
    from datasets import Dataset, DatasetDict

    return DatasetDict({name: Dataset.from_list(docs)})


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


def piqa(data_dir: str, **_metadata) -> DatasetDict:
    """{goal, sol1, sol2, label}: the labels (0 = sol1, 1 = sol2) live in a separate file."""
    questions, answers = FILES["piqa"]
    docs = _jsonl(data_file(data_dir, questions))
    labels = _lines(data_file(data_dir, answers))
    if len(labels) != len(docs):
        raise DataError(f"piqa: {len(docs)} questions but {len(labels)} labels")
    return _split("validation",
                  [{**doc, "label": int(label)} for doc, label in zip(docs, labels)])


def winogrande(data_dir: str, **_metadata) -> DatasetDict:
    """{sentence, option1, option2, answer}; lm-eval maps `answer` through {"1": 0, "2": 1}, so it
    must stay the string "1" / "2"."""
    docs = _jsonl(data_file(data_dir, *FILES["winogrande"]))
    return _split("validation", [{**doc, "answer": str(doc["answer"])} for doc in docs])


def split_hellaswag_context(ctx: str) -> tuple[str, str]:
    """(ctx_a, ctx_b) recovered from the joined context `ctx_a + " " + ctx_b`.

    lm-eval's prompt is `activity_label: ctx_a + " " + ctx_b.capitalize()`, but the derived file
    keeps only the joined text. In ActivityNet items ctx_b is the start of the next sentence, in
    lower case ("... sitting on a roof. he"); WikiHow items have an empty ctx_b. So a last
    sentence that starts with a lower-case letter is taken as ctx_b, anything else means ctx_b = "".
    """
    match = _LAST_SENTENCE.match(ctx)
    if match is None or not match.group(2)[:1].islower():
        return ctx, ""
    return match.group(1) or "", match.group(2)


def hellaswag(data_dir: str, **_metadata) -> DatasetDict:
    """{activity_label, ctx_a, ctx_b, endings, label} from the 6-lines-per-example text."""
    path = data_file(data_dir, *FILES["hellaswag"])
    with bz2.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    n = HELLASWAG_LINES_PER_EXAMPLE
    if len(lines) % n:
        raise DataError(f"hellaswag: {path} has {len(lines)} lines, not a multiple of {n}")
    docs = []
    for start in range(0, len(lines), n):
        context, label, *endings = lines[start:start + n]
        activity_label, _, ctx = context.partition(": ")
        ctx_a, ctx_b = split_hellaswag_context(ctx)
        docs.append({"activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b,
                     "ctx": ctx, "endings": endings, "label": label})
    return _split("validation", docs)


def _arc(data_dir: str, task: str) -> DatasetDict:
    """{id, question, choices: {text, label}, answerKey} as in HF `allenai/ai2_arc`. Labels and
    answer keys are kept as they are (A-E or 1-4; 3 to 5 choices): lm-eval's target is
    `choices.label.index(answerKey)`, which handles both."""
    docs = []
    for doc in _jsonl(data_file(data_dir, *FILES[task])):
        choices = doc["question"]["choices"]
        docs.append({"id": doc["id"], "question": doc["question"]["stem"],
                     "choices": {"text": [c["text"] for c in choices],
                                 "label": [c["label"] for c in choices]},
                     "answerKey": doc["answerKey"]})
    return _split("test", docs)


def arc_easy(data_dir: str, **_metadata) -> DatasetDict:
    return _arc(data_dir, "arc_easy")


def arc_challenge(data_dir: str, **_metadata) -> DatasetDict:
    return _arc(data_dir, "arc_challenge")
