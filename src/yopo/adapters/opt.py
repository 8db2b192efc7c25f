"""OPT: fc1 / fc2 sit on the decoder layer itself (no `.mlp`), with biases."""
from torch import nn

from ..errors import ConfigError
from .base import FFNAdapter, FFNBlock, ResidualBranch, ResidualLayout, norm_scale, norm_shift


class OPTAdapter(FFNAdapter):
    model_types = ("opt",)
    width_key = "ffn_dim"
    activation_key = "activation_function"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.decoder.layers

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        return FFNBlock([layer.fc1], layer.fc2, norm_scale(layer.final_layer_norm),
                        norm_bias=norm_shift(layer.final_layer_norm))

    def _set_ffn(self, layer, ffn_in, ffn_out):
        (layer.fc1,) = ffn_in
        layer.fc2 = ffn_out

    def residual_layout(self, model: nn.Module) -> ResidualLayout:
        config = model.config
        if not config.do_layer_norm_before:
            raise ConfigError(f"{config.name_or_path or 'this OPT model'} normalises after each "
                              "branch (do_layer_norm_before=False, e.g. OPT-350m); SliceGPT needs "
                              "pre-norm layers. Use another OPT size (125m, 1.3b, 6.7b, ...)")
        if config.word_embed_proj_dim != config.hidden_size:
            raise ConfigError("OPT with word_embed_proj_dim != hidden_size projects its embeddings "
                              "(project_in/project_out), which the SliceGPT layout does not cover")
        d = "model.decoder"
        if model.get_submodule(d).final_layer_norm is None:
            raise ConfigError("this OPT checkpoint has no final layer norm "
                              "(_remove_final_layer_norm); SliceGPT needs one before the head")
        # Token and learned position embeddings both write the stream; pre-norm branches as LLaMA.
        def branches(i: int) -> list[ResidualBranch]:
            layer = f"{d}.layers.{i}"
            attn = [f"{layer}.self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]
            return [ResidualBranch(f"{layer}.self_attn_layer_norm", attn,
                                   [f"{layer}.self_attn.out_proj"]),
                    ResidualBranch(f"{layer}.final_layer_norm", [f"{layer}.fc1"], [f"{layer}.fc2"])]

        layers = [branches(i) for i in range(len(self.decoder_layers(model)))]
        eps = model.get_submodule(f"{d}.final_layer_norm").eps  # OPT's config has no epsilon
        return ResidualLayout([f"{d}.embed_tokens", f"{d}.embed_positions"], layers,
                              f"{d}.final_layer_norm", "lm_head", norm_kind="layernorm",
                              norm_eps=float(eps))
