"""The one place that knows how a model family names its modules.

Method code never says `gate_proj` or `fc1`: it asks an adapter for each layer's FFN as an
`FFNBlock` (the linears that read the residual stream, the linear that writes back, and the
norm in front of them) and hands kept neuron indices back to `slice_ffn`. Methods that change
the residual stream itself (SliceGPT) ask for its `ResidualLayout`: every module that writes
into the stream, every norm that reads it, and the linears behind each norm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError


def norm_scale(norm: nn.Module) -> torch.Tensor | None:
    """The scale [d] a norm applies, or None where it has none: SliceGPT folds it into the
    linears behind the norm and leaves a weightless SlicedNorm."""
    return getattr(norm, "weight", None)


def norm_shift(norm: nn.Module) -> torch.Tensor | None:
    """The bias [d] a LayerNorm adds after its scale, or None (RMSNorm, a SliceGPT-folded norm)."""
    return getattr(norm, "bias", None)


@dataclass
class FFNBlock:
    """One transformer layer's FFN.

    ffn_in: linears whose *rows* are FFN neurons, weight [m, d] (gate and up for LLaMA-style,
            fc1 for Phi/OPT). ffn_in[0] is the "FFN1" matrix PruneNet scores.
    ffn_out: the linear whose *columns* are FFN neurons, weight [d, m].
    norm_weight: the norm scale applied to the FFN input, [d], or None.
    norm_bias: the norm bias added to the FFN input after the scale (LayerNorm), [d], or None.
    out_scale: the per-channel scale [d] the FFN's output passes on its way to the residual
               stream (Gemma's post-FFN norm), or None where it is added as it is.
    """

    ffn_in: list[nn.Linear]
    ffn_out: nn.Linear
    norm_weight: torch.Tensor | None
    out_scale: torch.Tensor | None = None
    norm_bias: torch.Tensor | None = None

    def output_columns(self) -> torch.Tensor:
        """What each neuron writes into the stream per unit of activation: ffn_out's weight
        [d, m], scaled per channel by out_scale where there is one (detached, float64)."""
        weight = self.ffn_out.weight.detach().double()
        if self.out_scale is None:
            return weight
        return self.out_scale.detach().double().to(weight.device)[:, None] * weight

    @property
    def ffn1(self) -> torch.Tensor:
        """The FFN1 weight [m, d] (a view, not a copy)."""
        return self.ffn_in[0].weight

    @property
    def width(self) -> int:
        return self.ffn_out.weight.shape[1]


def _sliced_linear(old: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new contiguous nn.Linear keeping `index` along weight dim `dim` (0 = rows, 1 = columns)."""
    weight = old.weight.data.index_select(dim, index.to(old.weight.device)).contiguous()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=old.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if old.bias is not None:
        # FFN_in biases follow their rows; FFN_out's bias lives in the hidden space and stays whole.
        bias = old.bias.data.index_select(0, index.to(old.bias.device)) if dim == 0 else old.bias.data
        new.bias.data.copy_(bias)
    return new


@dataclass
class ResidualBranch:
    """One residual branch: `norm` reads the stream, `readers` take the norm's output, and the
    `writers` add their outputs back to the stream. Qualified module names (model.get_submodule).
    The layer adds the stream it read to writers[-1]'s output (Phi's parallel branch has two
    writers, LLaMA/OPT branches one)."""

    norm: str
    readers: list[str]
    writers: list[str]


@dataclass
class ResidualLayout:
    """How a model reads and writes its residual stream [.., d] (pre-norm transformers only).

    embeddings: nn.Embedding modules whose rows are added to the stream at the input.
    layers: per decoder layer, its branches in execution order.
    final_norm, head: the norm after the last layer and the linear (LM head) reading it.
    norm_kind: "rms" (x / rms(x) * w) or "layernorm" ((x - mean) / std * w + b).
    norm_eps: the norms' epsilon.
    """

    embeddings: list[str]
    layers: list[list[ResidualBranch]]
    final_norm: str
    head: str
    norm_kind: str
    norm_eps: float


class FFNAdapter:
    """Base class of the model-family adapters (one file per family under yopo/adapters/)."""

    #: transformers `config.model_type` values this adapter handles.
    model_types: tuple[str, ...] = ()
    #: the config attribute that holds the FFN width.
    width_key: str = "intermediate_size"
    #: the config attribute that names the FFN's nonlinearity (a transformers ACT2FN key).
    activation_key: str = "hidden_act"

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        raise NotImplementedError

    def ffn_block(self, layer: nn.Module) -> FFNBlock:
        raise NotImplementedError

    def _set_ffn(self, layer: nn.Module, ffn_in: list[nn.Linear], ffn_out: nn.Linear) -> None:
        """Put sliced linears back in place of the layer's originals (same order as ffn_block)."""
        raise NotImplementedError

    def residual_layout(self, model: nn.Module) -> ResidualLayout:
        """The model's residual stream by module names; ConfigError where the architecture
        does not fit the pre-norm layout (e.g. post-norm OPT-350m)."""
        raise ConfigError(f"{type(self).__name__} does not describe its residual stream: "
                          "add residual_layout to it for SliceGPT")

    # ---- shared logic -------------------------------------------------------------------------
    def blocks(self, model: nn.Module) -> list[FFNBlock]:
        return [self.ffn_block(layer) for layer in self.decoder_layers(model)]

    def hidden_size(self, model: nn.Module) -> int:
        return self.blocks(model)[0].ffn1.shape[1]

    def ffn_width(self, model: nn.Module) -> int:
        return int(getattr(model.config, self.width_key))

    def activation_name(self, model: nn.Module) -> str | None:
        return getattr(model.config, self.activation_key, None)

    def slice_ffn(self, model: nn.Module, keep: list[torch.Tensor], uniform: bool = True) -> None:
        """Keep only neurons `keep[i]` (sorted LongTensor [k_i]) of layer i, in place.

        uniform=True: every layer must keep the same number k. transformers configs hold a
        single FFN width, so a uniform width is what makes the result reload as a standard
        checkpoint. uniform=False allows per-layer widths: the config then holds the widest,
        and only modeling_yopo_sliced.SlicedForCausalLM (which records every parameter whose
        shape differs from the config's architecture) reloads the result.
        """
        layers = self.decoder_layers(model)
        if len(keep) != len(layers):
            raise ValueError(f"got {len(keep)} keep-index tensors for {len(layers)} layers")
        widths = {int(k.numel()) for k in keep}
        if uniform and len(widths) != 1:
            raise ValueError(f"per-layer FFN widths {sorted(widths)} cannot be saved as a "
                             "standard checkpoint; keep the same number of neurons in every layer")
        for layer, index in zip(layers, keep):
            index = torch.sort(index.long()).values
            block = self.ffn_block(layer)
            self._set_ffn(layer,
                          [_sliced_linear(lin, index, dim=0) for lin in block.ffn_in],
                          _sliced_linear(block.ffn_out, index, dim=1))
        setattr(model.config, self.width_key, max(widths))
