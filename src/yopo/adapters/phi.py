"""Phi (phi-1, phi-1.5, phi-2): fc2(act(fc1(x))) with biases, parallel to attention."""
from torch import nn

from .base import FFNAdapter, FFNBlock


class PhiAdapter(FFNAdapter):
    model_types = ("phi",)
    width_key = "intermediate_size"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        # Attention and FFN share one input LayerNorm in Phi.
        return FFNBlock([layer.mlp.fc1], layer.mlp.fc2, layer.input_layernorm.weight)

    def _set_ffn(self, layer, ffn_in, ffn_out):
        (layer.mlp.fc1,) = ffn_in
        layer.mlp.fc2 = ffn_out
