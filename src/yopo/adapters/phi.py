"""Phi (phi-1, phi-1.5, phi-2): fc2(act(fc1(x))) with biases, parallel to attention."""
from torch import nn

from .base import FFNAdapter, FFNBlock, ResidualBranch, ResidualLayout, norm_scale, norm_shift


class PhiAdapter(FFNAdapter):
    model_types = ("phi",)
    width_key = "intermediate_size"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        # Attention and FFN share one input LayerNorm in Phi.
        return FFNBlock([layer.mlp.fc1], layer.mlp.fc2, norm_scale(layer.input_layernorm),
                        norm_bias=norm_shift(layer.input_layernorm))

    def _set_ffn(self, layer, ffn_in, ffn_out):
        (layer.mlp.fc1,) = ffn_in
        layer.mlp.fc2 = ffn_out

    def residual_layout(self, model: nn.Module) -> ResidualLayout:
        # One parallel branch per layer: x += dense(attn(q, k, v of ln(x))) + fc2(act(fc1(ln(x))))
        def branch(i: int) -> ResidualBranch:
            layer = f"model.layers.{i}"
            attn = [f"{layer}.self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]
            return ResidualBranch(f"{layer}.input_layernorm", attn + [f"{layer}.mlp.fc1"],
                                  [f"{layer}.self_attn.dense", f"{layer}.mlp.fc2"])

        return ResidualLayout(["model.embed_tokens"],
                              [[branch(i)] for i in range(len(self.decoder_layers(model)))],
                              "model.final_layernorm", "lm_head", norm_kind="layernorm",
                              norm_eps=float(model.config.layer_norm_eps))
