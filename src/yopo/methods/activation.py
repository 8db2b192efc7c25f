"""Activation-aware FFN pruning (Wanda-sp / FLAP style), the calibration-based counterpart of
PruneNet at the same granularity: whole FFN neurons, the same k in every layer.

h [tokens, m] is the input of the FFN output linear (act(gate(x)) * up(x) for LLaMA-style,
act(fc1(x)) for Phi/OPT), read with a forward hook on adapter.blocks(model)[i].ffn_out while the
model runs on calibration text. Neuron j's score is

    score_j = ||h[:, j]||_2 * ||W_out[:, j]||_2

(the Wanda score |W_ij| * ||X_j|| summed in the L2 sense over the neuron's output column): the
typical size of what neuron j adds to the residual stream (W_out[:, j] scaled per channel by
the post-FFN norm where the family has one, Gemma-3: FFNBlock.output_columns). Every layer keeps
its top k.
"""
from __future__ import annotations

import torch
from torch import nn

from ..adapters import FFNAdapter
from ..data.calibration import Calibration, generation_options_not_applying
from ..progress import progress
from .base import NeuronSelectionMethod


def ffn_input_square_sums(model: nn.Module, adapter: FFNAdapter, batches: torch.Tensor,
                          device: str) -> torch.Tensor:
    """sum over calibration tokens of h_j^2 per layer and neuron [L, m], float64.
    batches: token ids [n, seq_len], run one sequence at a time."""
    blocks = adapter.blocks(model)
    sums = torch.zeros(len(blocks), blocks[0].width, dtype=torch.float64, device=device)

    def accumulate(layer: int):
        def hook(module, args):
            h = args[0].detach()  # [..., m]
            sums[layer] += h.double().pow(2).reshape(-1, h.shape[-1]).sum(0)
        return hook

    handles = [b.ffn_out.register_forward_pre_hook(accumulate(i)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            for ids in progress(batches, desc="calibration activations (sequences)"):
                model(input_ids=ids[None].to(device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return sums


def activation_scores(model: nn.Module, adapter: FFNAdapter, batches: torch.Tensor,
                      device: str) -> torch.Tensor:
    """score [L, m] = ||h_j||_2 * ||W_out[:, j]||_2 (module docstring), float64."""
    column_norms = torch.stack([b.output_columns().norm(dim=0)
                                for b in adapter.blocks(model)]).to(device)  # [L, m]
    return ffn_input_square_sums(model, adapter, batches, device).sqrt() * column_norms


class ActivationNeurons(NeuronSelectionMethod):
    uses_seed = False  # deterministic: no random draw depends on the run's seed
    options_not_applying = staticmethod(generation_options_not_applying)

    def __init__(self, name: str = "activation", *, calibration_source: str = "local",
                 calibration_tokens: int = 32768, calibration_seq_len: int = 2048,
                 generation_temperature: float = 1.0, generation_seed: int = 0):
        super().__init__(name)
        self.calibration = Calibration(calibration_source, int(calibration_tokens),
                                       int(calibration_seq_len), float(generation_temperature),
                                       int(generation_seed))

    def keep_indices(self, model, adapter, k, ctx):
        batches = self.calibration.batches(ctx, model)
        scores = activation_scores(model, adapter, batches, ctx.device)
        keep = scores.topk(k, dim=-1).indices.cpu()
        return [idx.sort().values for idx in keep], self.calibration.report()
