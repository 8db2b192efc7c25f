"""The common interface of pruning methods: `method=<name>` picks one module under methods/.

A method turns a dense model into a pruned one in place and returns a report (a JSON-able dict)
that goes into the run's metrics.json. Methods that remove FFN neurons only decide *which*
neurons to keep (`NeuronSelectionMethod.keep_indices`); slicing, width rounding and
bookkeeping are shared here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..adapters import FFNAdapter
from ..errors import ConfigError


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"ratio={ratio} is out of range: it is the fraction of FFN neurons "
                         "removed per layer and must be in [0, 1), e.g. ratio=0.3")
    return ratio


def kept_width(width: int, ratio: float, round_to: int = 1) -> int:
    """k = floor((1 - ratio) * m), rounded down to a multiple of `round_to` (at least one)."""
    check_ratio(ratio)
    if round_to < 1:
        raise ConfigError(f"round_to={round_to} must be a positive integer")
    k = math.floor(round((1.0 - ratio) * width, 6))  # round() absorbs 0.7*1000 = 699.999...
    return min(width, max(round_to, k // round_to * round_to))


@dataclass
class PruneContext:
    """What a method may use besides the model: everything comes from the run's config."""

    ratio: float
    seed: int = 0
    round_to: int = 1
    device: str = "cpu"
    run_dir: Path | None = None  # where a method may save artefacts (e.g. the policy)
    model_name: str = ""
    tokenizer: Any = None  # for methods that read calibration text
    data_dir: Path | None = None
    calibration_tokens: int = 0
    policy: Path | None = None  # a saved policy to reuse instead of training (policy=, transfer=)
    cache_dir: Path | None = None  # where a method may cache what it derives from the model alone

    def calibration_ids(self) -> torch.Tensor:
        """The held-out calibration slice of the local WikiText-2 text, LongTensor [n]; never
        the text perplexity is measured on (see yopo.data.wikitext.split_calibration)."""
        from ..data.wikitext import split_calibration, wikitext2_token_ids

        ids = wikitext2_token_ids(self.tokenizer, self.data_dir)
        return split_calibration(ids, self.calibration_tokens)[0]


class PruningMethod:
    """Base class. Subclasses are built by Hydra from conf/method/<name>.yaml (`_target_`).

    What a run's identity (yopo.identity) leaves out for a method: `uses_seed = False` for a
    deterministic method (its runs at other seeds are the same run), `training_options` when a
    saved policy is reused instead of trained, and `runtime_options` that change speed or
    memory only, and `options_not_applying(options)`: the options that this configuration
    of the method does not read (the text-generation options when the calibration text is not
    self-generated).
    """

    uses_seed = True
    takes_policy = False  # True: the method reuses a saved policy given as PruneContext.policy
    training_options: tuple[str, ...] = ()
    runtime_options: tuple[str, ...] = ()

    @staticmethod
    def options_not_applying(options: Mapping[str, Any]) -> tuple[str, ...]:
        return ()

    def __init__(self, name: str):
        self.name = name

    def prune(self, model: nn.Module, adapter: FFNAdapter, ctx: PruneContext) -> dict[str, Any]:
        raise NotImplementedError

    def checkpoint_model(self, model: nn.Module) -> nn.Module:
        """What save_pretrained writes for the pruned model: the model itself unless the
        method changed it into an architecture transformers does not know (SliceGPT)."""
        return model


class NeuronSelectionMethod(PruningMethod):
    """Methods that keep k of the m FFN neurons in every layer (uniform width)."""

    def keep_indices(self, model: nn.Module, adapter: FFNAdapter, k: int,
                     ctx: PruneContext) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Return per-layer kept neuron indices ([k] each) and a method report."""
        raise NotImplementedError

    def prune(self, model, adapter, ctx):
        width = adapter.ffn_width(model)
        k = kept_width(width, ctx.ratio, ctx.round_to)
        keep, report = self.keep_indices(model, adapter, k, ctx)
        adapter.slice_ffn(model, keep)
        return {"ffn_width_dense": width, "ffn_width_pruned": k, "ratio_semantics": "ffn_width",
                "ratio_achieved": 1.0 - k / width, **report}
