"""LLaMA-style FFN: down(act(gate(x)) * up(x)). Covers LLaMA, Mistral, Qwen2/3 and SmolLM2."""
from torch import nn

from .base import FFNAdapter, FFNBlock


class LlamaAdapter(FFNAdapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    width_key = "intermediate_size"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        mlp = layer.mlp
        # gate_proj first: it is the FFN1 matrix PruneNet scores.
        return FFNBlock([mlp.gate_proj, mlp.up_proj], mlp.down_proj,
                        layer.post_attention_layernorm.weight)

    def _set_ffn(self, layer, ffn_in, ffn_out):
        layer.mlp.gate_proj, layer.mlp.up_proj = ffn_in
        layer.mlp.down_proj = ffn_out
