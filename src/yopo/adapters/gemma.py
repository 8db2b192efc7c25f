"""Gemma-3 (text): down(act(gate(x)) * up(x)), as LLaMA-style, with two differences that matter
to the methods:

- every RMSNorm scales by (1 + weight), not weight;
- the FFN reads `pre_feedforward_layernorm`, and its output passes `post_feedforward_layernorm`
  before the residual add (attention likewise through `post_attention_layernorm`). That norm
  divides the whole output vector of a token by its RMS (the same factor for every neuron) and
  multiplies channel c by (1 + w_c): what neuron j writes reaches the stream as
  (1 + w) * down[:, j] (FFNBlock.out_scale).

The activation is named by `hidden_activation` (gelu_pytorch_tanh); the token embeddings are
scaled by sqrt(hidden) inside the model. Branch outputs normalised before the add break the
rotation invariance SliceGPT needs, so it gets no residual layout here.
"""
import torch
from torch import nn

from ..errors import ConfigError
from .base import FFNBlock, ResidualLayout
from .llama import LlamaAdapter


def gemma_norm_scale(norm: nn.Module) -> torch.Tensor:
    """The per-channel scale [d] of a Gemma RMSNorm: 1 + weight."""
    return 1.0 + norm.weight


class GemmaAdapter(LlamaAdapter):
    """LLaMA's module names (model.layers[i].mlp.gate_proj / up_proj / down_proj); other norms."""

    model_types = ("gemma3_text",)
    activation_key = "hidden_activation"

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        mlp = layer.mlp
        return FFNBlock([mlp.gate_proj, mlp.up_proj], mlp.down_proj,
                        gemma_norm_scale(layer.pre_feedforward_layernorm),
                        out_scale=gemma_norm_scale(layer.post_feedforward_layernorm))

    def residual_layout(self, model: nn.Module) -> ResidualLayout:
        raise ConfigError("SliceGPT needs a pre-norm residual stream, but Gemma-3 normalises "
                          "each branch's output (post_attention_layernorm, "
                          "post_feedforward_layernorm) before adding it, which breaks the "
                          "rotation invariance SliceGPT relies on: use an FFN-width method")
