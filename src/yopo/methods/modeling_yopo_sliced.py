"""A SliceGPT-sliced causal LM (Ashkboos et al., ICLR 2024) that reloads on its own.

This file is copied into every sliced checkpoint and config.json's `auto_map` points at it, so
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` rebuilds the model with
only torch and transformers installed. It imports nothing from yopo and knows no model family:
the checkpoint's config names the modules to change. A sliced model is the original architecture
(built by transformers from `base_config`) with

- `shapes`: parameters whose shape changed (name -> shape). Linears that read the residual
  stream keep d' of its D input columns, linears and embeddings that write it d' rows/columns;
  a reader that had no bias may have gained one (a folded LayerNorm bias).
- `norms`: every norm that reads the stream is a `SlicedNorm` (name -> eps, shortcut writer):
  an RMSNorm whose scale was folded into the linears behind it and that divides by the dense
  width D. A branch's norm also holds the branch's shortcut matrix S [d', d'] (Q_in^T Q_out,
  sliced): the stream that bypasses the branch is carried from the basis Q_in it was read in to
  the basis Q_out the branch writes in.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig,
                          PreTrainedModel)


class SlicedNorm(nn.Module):
    """x * rsqrt(sum(x^2) / dense_dim + eps) over the d' kept coordinates of x [..., d'].

    Dividing by the dense width D (not d') keeps the norm equal to the dense model's up to the
    energy in the sliced-off directions. With `shortcut_dim`, the norm remembers the stream x it
    read and `add_shortcut` (a forward hook on the branch's last writer) turns the layer's
    `x + writer(...)` into `x @ S + writer(...)`.
    """

    def __init__(self, dense_dim: int, eps: float, shortcut_dim: int | None = None):
        super().__init__()
        self.dense_dim, self.eps = dense_dim, eps
        self.shortcut = (nn.Parameter(torch.empty(shortcut_dim, shortcut_dim))
                         if shortcut_dim else None)
        self._stream: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            self._stream = x
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).sum(-1, keepdim=True) / self.dense_dim + self.eps)
        return h.to(x.dtype)

    def add_shortcut(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: the layer adds x to the writer's output; adding x @ S - x makes it x @ S.
        Computed in float32: x holds the stream's large values."""
        x, self._stream = self._stream, None
        if x is None:
            raise RuntimeError("a shortcut writer ran before its branch's norm read the stream")
        x32 = x.float()
        return (output.float() + x32 @ self.shortcut.float() - x32).to(output.dtype)

    def extra_repr(self) -> str:
        width = None if self.shortcut is None else self.shortcut.shape[0]
        return f"dense_dim={self.dense_dim}, eps={self.eps}, shortcut={width}"


def install_norm(model: nn.Module, name: str, dense_dim: int, eps: float,
                 shortcut_writer: str | None = None, shortcut_dim: int | None = None
                 ) -> SlicedNorm:
    """Replace the module `name` by a SlicedNorm; hook its shortcut onto `shortcut_writer`."""
    norm = SlicedNorm(dense_dim, eps, shortcut_dim if shortcut_writer else None)
    norm.shortcut_writer = shortcut_writer
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, norm)
    if shortcut_writer:
        model.get_submodule(shortcut_writer).register_forward_hook(norm.add_shortcut)
    return norm


def set_parameter(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Put `value` as parameter `name` (replacing or adding it) and keep the module's size
    attributes (in_features, embedding_dim, ...) truthful."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    setattr(module, attr, nn.Parameter(value, requires_grad=False))
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape


class SlicedConfig(PreTrainedConfig):
    model_type = "yopo_sliced"

    base_config: dict | None = None  # the dense model's config (to_dict(), embeddings untied)
    dense_hidden_size: int = 0  # D
    hidden_size: int = 0  # d', the sliced width of the residual stream
    shapes: dict | None = None  # parameter name -> shape, where it differs from base_config's
    norms: dict | None = None  # norm module name -> {"eps": float, "shortcut_writer": str|None}
    vocab_size: int | None = None
    max_position_embeddings: int | None = None
    tie_word_embeddings: bool = False


class SlicedForCausalLM(PreTrainedModel, GenerationMixin):
    """The base architecture with the slicing applied; forward() is the base model's."""

    config_class = SlicedConfig
    base_model_prefix = "base"
    _supports_sdpa = True

    def __init__(self, config: SlicedConfig, base: nn.Module | None = None):
        super().__init__(config)
        if base is None:  # reloading: rebuild the structure, the weights are loaded after
            base = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.base_config))
            for name, shape in config.shapes.items():
                set_parameter(base, name, torch.empty(shape))
            for name, spec in config.norms.items():
                install_norm(base, name, config.dense_hidden_size, spec["eps"],
                             spec["shortcut_writer"], config.hidden_size)
        self.base = base
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Every weight comes from the checkpoint; the base class may init what it owns."""
        if module is not self and isinstance(module, PreTrainedModel):
            module._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.base.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.base.get_output_embeddings()

    def forward(self, *args, **kwargs):
        return self.base(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, **kwargs):
        return self.base.prepare_inputs_for_generation(*args, **kwargs)

    @classmethod
    def wrap(cls, model: nn.Module) -> "SlicedForCausalLM":
        """Wrap a model sliced in place (its SlicedNorms installed, its parameters reshaped)
        without copying it: the shapes are found by comparing with the dense architecture."""
        base_config = model.config.to_dict()
        with torch.device("meta"):
            dense = AutoModelForCausalLM.from_config(AutoConfig.for_model(**base_config))
        dense_shapes = {name: tuple(p.shape) for name, p in dense.named_parameters()}
        shapes = {name: list(p.shape) for name, p in model.named_parameters()
                  if dense_shapes.get(name) != tuple(p.shape) and not name.endswith(".shortcut")}
        norms = {name: module for name, module in model.named_modules()
                 if isinstance(module, SlicedNorm)}
        widths = {m.shortcut.shape[0] for m in norms.values() if m.shortcut is not None}
        dense_dims = {m.dense_dim for m in norms.values()}
        if len(widths) != 1 or len(dense_dims) != 1:
            raise ValueError(f"not a uniformly sliced model: stream widths {sorted(widths)}, "
                             f"dense widths {sorted(dense_dims)}")
        config = SlicedConfig(
            base_config=base_config, dense_hidden_size=dense_dims.pop(), hidden_size=widths.pop(),
            shapes=shapes, vocab_size=base_config.get("vocab_size"),
            max_position_embeddings=base_config.get("max_position_embeddings"),
            norms={name: {"eps": m.eps, "shortcut_writer": m.shortcut_writer}
                   for name, m in norms.items()})
        return cls(config, base=model)


SlicedConfig.register_for_auto_class()
SlicedForCausalLM.register_for_auto_class("AutoModelForCausalLM")
