"""Random FFN pruning: in every layer keep k of the m neurons uniformly at random.

The floor any criterion must beat. One torch.Generator seeded with the run's seed draws the
layers in order (layer i's set is the first k of a random permutation of range(m)), so the same
seed gives the same mask and another seed another one.
"""
from __future__ import annotations

import torch

from .base import NeuronSelectionMethod


class RandomNeurons(NeuronSelectionMethod):
    def __init__(self, name: str = "random"):
        super().__init__(name)

    def keep_indices(self, model, adapter, k, ctx):
        width = adapter.ffn_width(model)
        gen = torch.Generator().manual_seed(ctx.seed)
        keep = [torch.randperm(width, generator=gen)[:k].sort().values
                for _ in adapter.decoder_layers(model)]
        return keep, {}
