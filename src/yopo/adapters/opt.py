"""OPT: fc1 / fc2 sit on the decoder layer itself (no `.mlp`), with biases."""
from torch import nn

from .base import FFNAdapter, FFNBlock


class OPTAdapter(FFNAdapter):
    model_types = ("opt",)
    width_key = "ffn_dim"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.decoder.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        return FFNBlock([layer.fc1], layer.fc2, layer.final_layer_norm.weight)

    def _set_ffn(self, layer, ffn_in, ffn_out):
        (layer.fc1,) = ffn_in
        layer.fc2 = ffn_out
