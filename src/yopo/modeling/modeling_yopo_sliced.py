"""A sliced causal LM that reloads on its own: SliceGPT (Ashkboos et al., ICLR 2024) or FFN
pruning with a different width in every layer.

This file is copied into every sliced checkpoint and config.json's `auto_map` points at it, so
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` rebuilds the model with
only torch and transformers installed. It imports nothing from yopo and knows no model family:
the checkpoint's config names the modules to change. A sliced model is the original architecture
(built by transformers from `base_config`) with

- `shapes`: parameters whose shape changed (name -> shape). SliceGPT: linears that read the
  residual stream keep d' of its D input columns, linears and embeddings that write it d'
  rows/columns; a reader that had no bias may have gained one (a folded LayerNorm bias).
  Per-layer FFN widths: each narrowed layer's FFN linears (base_config holds the widest width).
- `norms` (SliceGPT only; empty when the stream is whole): every norm that reads the stream is
  a `SlicedNorm` (name -> SlicedNorm.spec()):
  an RMSNorm whose scale was folded into the linears behind it and that divides by the dense
  width D. A branch's norm also holds the branch's shortcut matrix S [d', d'] (Q_in^T Q_out,
  sliced): the stream that bypasses the branch is carried from the basis Q_in it was read in to
  the basis Q_out the branch writes in. With the head unsliced (SliceGPT's default), the last
  layer writes all D coordinates and its shortcut is [d', D].
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig,
                          PreTrainedModel)


class SlicedNorm(nn.Module):
    """x * rsqrt(sum(x^2) / dense_dim + eps) over the d kept coordinates of x [..., d].

    Dividing by the dense width D (not d) keeps the norm equal to the dense model's up to the
    energy in the sliced-off directions. Two jobs besides normalising:

    - a branch's norm holds its shortcut S [d, d_out]: it remembers the stream x it read, and
      `add_shortcut` (a forward hook on the branch's last writer) turns the layer's
      `x + writer(...)` into `x @ S + writer(...)`;
    - when the head is not sliced, the last layer writes d_out = D coordinates while the layer's
      own residual add has only d: `take_overflow` (a hook on each of the last branch's writers,
      run after the shortcut) passes the first d on and keeps the rest for the final norm, which
      puts them back before normalising.
    """

    def __init__(self, dense_dim: int, eps: float, shortcut_shape: list[int] | None = None,
                 shortcut_writer: str | None = None, overflow_writers: list[str] | None = None,
                 stream_width: int | None = None):
        super().__init__()
        self.dense_dim, self.eps = dense_dim, eps
        self.shortcut = (nn.Parameter(torch.empty(*shortcut_shape), requires_grad=False)
                         if shortcut_shape else None)
        self.shortcut_writer = shortcut_writer
        self.overflow_writers = list(overflow_writers or [])
        self.stream_width = stream_width
        self._stream: torch.Tensor | None = None
        self._overflow: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            self._stream = x
        if self._overflow is not None:  # [tokens, D - d] written by the last layer
            x = torch.cat([x, self._overflow.reshape(*x.shape[:-1], -1).to(x.dtype)], dim=-1)
            self._overflow = None
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).sum(-1, keepdim=True) / self.dense_dim + self.eps)
        return h.to(x.dtype)

    def add_shortcut(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: the layer adds x [.., d] to the writer's output [.., d_out]; adding
        x @ S - x makes that x @ S. Float32: the stream holds large values."""
        x, self._stream = self._stream, None
        if x is None:
            raise RuntimeError("a shortcut writer ran before its branch's norm read the stream")
        carried = x.float() @ self.shortcut.float()  # [.., d_out]
        carried[..., : x.shape[-1]] -= x.float()
        return (output.float() + carried).to(output.dtype)

    def take_overflow(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on a last-layer writer (output [.., D]): keep coordinates d.. here."""
        rest = output[..., self.stream_width:]
        self._overflow = rest if self._overflow is None else self._overflow + rest
        return output[..., : self.stream_width]

    def spec(self) -> dict:
        """What install_norm needs to rebuild this norm (goes into the checkpoint's config)."""
        return {"eps": self.eps,
                "shortcut_shape": None if self.shortcut is None else list(self.shortcut.shape),
                "shortcut_writer": self.shortcut_writer,
                "overflow_writers": self.overflow_writers, "stream_width": self.stream_width}

    def extra_repr(self) -> str:
        shape = None if self.shortcut is None else tuple(self.shortcut.shape)
        return f"dense_dim={self.dense_dim}, eps={self.eps}, shortcut={shape}"


def install_norm(model: nn.Module, name: str, dense_dim: int, eps: float,
                 shortcut_shape: list[int] | None = None, shortcut_writer: str | None = None,
                 overflow_writers: list[str] | None = None, stream_width: int | None = None
                 ) -> SlicedNorm:
    """Replace the module `name` by a SlicedNorm and hook it onto its writers."""
    norm = SlicedNorm(dense_dim, eps, shortcut_shape, shortcut_writer, overflow_writers,
                      stream_width)
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, norm)
    if shortcut_writer:  # prepended: the shortcut joins before any overflow is split off
        model.get_submodule(shortcut_writer).register_forward_hook(norm.add_shortcut,
                                                                   prepend=True)
    for writer in norm.overflow_writers:
        model.get_submodule(writer).register_forward_hook(norm.take_overflow)
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
    norms: dict | None = None  # norm module name -> SlicedNorm.spec()
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
                install_norm(base, name, config.dense_hidden_size, **spec)
        else:  # wrapping a live model: its weights are final, also in modules made by slicing
            for module in base.modules():  # (post_init initialises modules without this flag)
                module._is_hf_initialized = True
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

    def generate(self, *args, **kwargs):
        """The base model generates: its config describes the layers and the cache."""
        return self.base.generate(*args, **kwargs)

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
        if norms:  # the residual stream was sliced (SliceGPT): one stream width throughout
            widths = {m.shortcut.shape[0] for m in norms.values() if m.shortcut is not None}
            dense_dims = {m.dense_dim for m in norms.values()}
            if len(widths) != 1 or len(dense_dims) != 1:
                raise ValueError(f"not a uniformly sliced model: stream widths {sorted(widths)}, "
                                 f"dense widths {sorted(dense_dims)}")
            dense_dim, width = dense_dims.pop(), widths.pop()
        else:  # only inner widths changed (per-layer FFN widths): the stream is whole
            dense_dim = width = base_config["hidden_size"]
        config = SlicedConfig(
            base_config=base_config, dense_hidden_size=dense_dim, hidden_size=width,
            shapes=shapes, norms={name: m.spec() for name, m in norms.items()},
            vocab_size=base_config.get("vocab_size"),
            max_position_embeddings=base_config.get("max_position_embeddings"),
            tie_word_embeddings=bool(base_config.get("tie_word_embeddings", False)))
        return cls(config, base=model)


SlicedConfig.register_for_auto_class()
SlicedForCausalLM.register_for_auto_class("AutoModelForCausalLM")
