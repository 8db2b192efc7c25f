"""Weight-magnitude FFN pruning: keep the neurons with the largest weights. Calibration-free.

Neuron j of a layer owns row j of every FFN input matrix (gate and up for LLaMA-style, fc1 for
Phi/OPT; W_in [m, d]) and column j of the output matrix (W_out [d, m]). Its score is the L2 norm
of all these weights together, biases excluded:

    score_j = sqrt( sum_{W in ffn_in} ||W[j, :]||_2^2 + ||W_out[:, j]||_2^2 )

and every layer keeps its k highest-scoring neurons. Where the FFN output passes a per-channel
scale before the stream (Gemma-3's post-FFN norm), W_out[:, j] is taken with that scale
(FFNBlock.output_columns): what the neuron writes, not how the weight happens to be split.
"""
from __future__ import annotations

import torch
from torch import nn

from ..adapters import FFNAdapter
from .base import NeuronSelectionMethod


def magnitude_scores(model: nn.Module, adapter: FFNAdapter) -> torch.Tensor:
    """score [L, m] as in the module docstring, in float64."""
    rows = []
    for block in adapter.blocks(model):
        squares = block.output_columns().pow(2).sum(0)  # [m]
        for linear in block.ffn_in:
            squares = squares + linear.weight.detach().double().pow(2).sum(1)
        rows.append(squares.sqrt())
    return torch.stack(rows)


class MagnitudeNeurons(NeuronSelectionMethod):
    uses_seed = False  # deterministic: no random draw depends on the run's seed

    def __init__(self, name: str = "magnitude"):
        super().__init__(name)

    def keep_indices(self, model, adapter, k, ctx):
        keep = magnitude_scores(model, adapter).topk(k, dim=-1).indices.cpu()
        return [idx.sort().values for idx in keep], {}
