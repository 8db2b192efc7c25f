"""The published numbers our tables are compared against, in one place.

Source: Sengupta, Chaudhary, Chakraborty. "You Only Prune Once: Designing Calibration-Free Model
Compression With Policy Learning" (PruneNet), ICLR 2025.

Conventions of these constants:
- accuracies are percentages (0-100), the five-task zero-shot average over PIQA, WinoGrande,
  HellaSwag, ARC-easy and ARC-challenge, with the metrics of TASK_METRICS;
- ratios are fractions; for PruneNet the fraction of FFN neurons removed per layer, for
  SliceGPT the fraction of the hidden (embedding) dimension sliced away, so equal ratios
  remove different amounts of parameters (runs record `ratio_semantics`);
- keys are our model config names (conf/model/<name>.yaml) and method names (conf/method/);
- only the numbers transcribed below are here. Per-task accuracies were not transcribed:
  `zeroshot()` answers None for them rather than a guess, and None for every setting absent here.
"""
from __future__ import annotations

CITATION = ('Sengupta et al., "You Only Prune Once: Designing Calibration-Free Model Compression '
            'With Policy Learning" (PruneNet), ICLR 2025')

#: The zero-shot tasks of the paper's tables, in its column order.
TASKS = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge")
#: The metric the paper reports per task (lm-eval names): length-normalised accuracy where
#: answers differ in length, plain accuracy for WinoGrande (its choices are whole sentences that
#: differ in one word). The order is the tables' column order.
TASK_METRICS = {"piqa": "acc_norm", "winogrande": "acc", "hellaswag": "acc_norm",
                "arc_easy": "acc_norm", "arc_challenge": "acc_norm"}

# (model, method, ratio) -> five-task zero-shot average in percent, without recovery
# fine-tuning. The dense model is stored at ratio 0.0.
ZEROSHOT_AVG: dict[tuple[str, str, float], float] = {
    ("llama2_7b", "dense", 0.0): 69.0,
    # LLaMA-2-7B main comparison (rounded to one decimal in the paper's summary)
    ("llama2_7b", "prunenet", 0.2): 61.7,
    ("llama2_7b", "prunenet", 0.25): 58.6,
    ("llama2_7b", "prunenet", 0.3): 55.5,
    ("llama2_7b", "slicegpt", 0.2): 58.2,
    ("llama2_7b", "slicegpt", 0.25): 55.5,
    ("llama2_7b", "slicegpt", 0.3): 51.5,
    # Phi-2 at 30 %
    ("phi2", "prunenet", 0.3): 61.05,
    ("phi2", "slicegpt", 0.3): 51.99,
}

# PruneNet with and without recovery fine-tuning (RFT), five-task average in percent: the
# paper's RFT comparison, which gives the no-RFT LLaMA-2-7B averages to two decimals.
RECOVERY_AVG: dict[tuple[str, float], dict[str, float]] = {
    ("llama2_7b", 0.2): {"without": 61.67, "with": 62.34},
    ("llama2_7b", 0.25): {"without": 58.63, "with": 60.05},
    ("llama2_7b", 0.3): {"without": 55.45, "with": 57.08},
    ("phi2", 0.3): {"without": 61.05, "with": 58.30},
}

# PruneNet compression time (policy learning + slicing), seconds.
COMPRESSION_SECONDS: dict[str, float] = {"llama2_7b": 916.0}  # "about 15 minutes"

# Generation throughput in tokens per second, dense vs PruneNet-compressed.
THROUGHPUT_TOKENS_PER_S: dict[tuple[str, float], dict[str, float]] = {
    ("llama2_7b", 0.3): {"dense": 11.96, "pruned": 20.74},
}


def _key_ratio(ratio: float) -> float:
    return round(float(ratio), 6)  # 0.1 + 0.2 style float noise must not miss a key


def zeroshot(model: str, method: str, ratio: float) -> dict[str, float | None]:
    """The paper's zero-shot numbers for one setting: {task: None, ..., "avg": avg or None}."""
    avg = ZEROSHOT_AVG.get((model, method, _key_ratio(ratio)))
    return {**{task: None for task in TASKS}, "avg": avg}


def recovery_avg(model: str, ratio: float, finetuned: bool) -> float | None:
    entry = RECOVERY_AVG.get((model, _key_ratio(ratio)))
    return None if entry is None else entry["with" if finetuned else "without"]


def compression_seconds(model: str) -> float | None:
    return COMPRESSION_SECONDS.get(model)


def throughput(model: str, ratio: float) -> dict[str, float] | None:
    """{"dense": tok/s, "pruned": tok/s, "speedup": pruned / dense} or None."""
    entry = THROUGHPUT_TOKENS_PER_S.get((model, _key_ratio(ratio)))
    if entry is None:
        return None
    return {**entry, "speedup": entry["pruned"] / entry["dense"]}
