"""LLaMA-style FFN: down(act(gate(x)) * up(x)). Covers LLaMA, Mistral, Qwen2/3 and SmolLM2."""
from torch import nn

from .base import FFNAdapter, FFNBlock, ResidualBranch, ResidualLayout, norm_scale


class LlamaAdapter(FFNAdapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    width_key = "intermediate_size"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        mlp = layer.mlp
        # gate_proj first: it is the FFN1 matrix PruneNet scores.
        return FFNBlock([mlp.gate_proj, mlp.up_proj], mlp.down_proj,
                        norm_scale(layer.post_attention_layernorm))

    def _set_ffn(self, layer, ffn_in, ffn_out):
        layer.mlp.gate_proj, layer.mlp.up_proj = ffn_in
        layer.mlp.down_proj = ffn_out

    def residual_layout(self, model: nn.Module) -> ResidualLayout:
        # x += o(attn(q, k, v of norm1(x)));  x += down(act(gate) * up of norm2(x));  head(norm(x))
        def branches(i: int) -> list[ResidualBranch]:
            layer = f"model.layers.{i}"
            attn = [f"{layer}.self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]
            return [ResidualBranch(f"{layer}.input_layernorm", attn, [f"{layer}.self_attn.o_proj"]),
                    ResidualBranch(f"{layer}.post_attention_layernorm",
                                   [f"{layer}.mlp.gate_proj", f"{layer}.mlp.up_proj"],
                                   [f"{layer}.mlp.down_proj"])]

        return ResidualLayout(["model.embed_tokens"],
                              [branches(i) for i in range(len(self.decoder_layers(model)))],
                              "model.norm", "lm_head", norm_kind="rms",
                              norm_eps=float(model.config.rms_norm_eps))
