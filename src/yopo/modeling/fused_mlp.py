"""Gate and up projections of gated FFNs fused into one product, for inference speed.

A LLaMA-style FFN computes down(act(gate(x)) * up(x)) with gate, up: [k, d]. `fuse_gate_up`
replaces the two [k, d] products by one [2k, d] product (one GEMM over a contiguous weight:
one read of x, one kernel launch, a wider N for the tensor cores), which matters most for a
pruned model whose k is no longer a round number. Outputs are those of the unfused module up
to float rounding (each output element is still one dot product of a weight row with x).

Checkpoints stay standard: a fused module saves and loads its weight as the two halves under
the original names (`gate_proj.weight`, `up_proj.weight`), so `save_pretrained` of a fused
model reloads with plain transformers (saving copies the halves, as safetensors refuses
tensors that share memory). `unfuse_gate_up` puts the original modules back, e.g. before
slicing again with an adapter.

Applies to every module with `gate_proj`, `up_proj`, `down_proj` (nn.Linear) and `act_fn`,
i.e. the gated MLPs of LLaMA, Mistral, Qwen2/3 and SmolLM2; Phi-3 is fused already.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

_HALVES = ("gate_proj", "up_proj")


def _is_gated_mlp(module: nn.Module) -> bool:
    linears = [getattr(module, name, None) for name in (*_HALVES, "down_proj")]
    return (all(isinstance(lin, nn.Linear) for lin in linears) and hasattr(module, "act_fn")
            and linears[0].weight.shape == linears[1].weight.shape
            and (linears[0].bias is None) == (linears[1].bias is None))


class FusedGateUpMLP(nn.Module):
    """down(act(g) * u) with [g, u] = x W^T (+ b), W = [W_gate; W_up]: [2k, d] contiguous."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        gate, up = mlp.gate_proj, mlp.up_proj
        self.gate_up_weight = nn.Parameter(torch.cat([gate.weight, up.weight]).detach(),
                                           requires_grad=gate.weight.requires_grad)
        bias = None if gate.bias is None else nn.Parameter(
            torch.cat([gate.bias, up.bias]).detach(), requires_grad=gate.bias.requires_grad)
        self.gate_up_bias = bias
        self.down_proj, self.act_fn = mlp.down_proj, mlp.act_fn
        del mlp.gate_proj, mlp.up_proj  # free the unfused copies
        # The emptied original module is kept (not as a submodule: no second down_proj in the
        # state dict) so that unfusing restores its class and attributes.
        object.__setattr__(self, "unfused_shell", mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = nn.functional.linear(x, self.gate_up_weight, self.gate_up_bias).chunk(2, -1)
        return self.down_proj(self.act_fn(gate) * up)

    def _halves(self, prefix: str):
        """(state-dict key, view into the fused tensor) for gate/up weight (and bias)."""
        for suffix, fused in (("weight", self.gate_up_weight), ("bias", self.gate_up_bias)):
            if fused is not None:
                for name, half in zip(_HALVES, fused.chunk(2)):
                    yield f"{prefix}{name}.{suffix}", half

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for key, half in self._halves(prefix):
            destination[key] = half.clone() if keep_vars else half.detach().clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for key, half in self._halves(prefix):
            if key not in state_dict:
                missing_keys.append(key)
            elif state_dict[key].shape != half.shape:
                error_msgs.append(f"size mismatch for {key}: checkpoint has "
                                  f"{tuple(state_dict[key].shape)}, model has {tuple(half.shape)}")
            else:
                with torch.no_grad():
                    half.copy_(state_dict[key])
        if strict:
            known = {*_HALVES, *self._modules}
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix)
                                   and k[len(prefix):].split(".", 1)[0] not in known)


def _replace_children(model: nn.Module, match, build) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, build(child))
                count += 1
    return count


def fuse_gate_up(model: nn.Module) -> int:
    """Fuse every gated MLP of `model` in place; returns how many were fused."""
    count = _replace_children(model, _is_gated_mlp, FusedGateUpMLP)
    if count == 0:
        raise ConfigError(f"{type(model).__name__} has no gated MLP (gate_proj/up_proj/"
                          "down_proj/act_fn) to fuse; only LLaMA-style FFNs can be fused")
    return count


def _unfuse(fused: FusedGateUpMLP) -> nn.Module:
    shell = fused.unfused_shell
    weights = fused.gate_up_weight.detach().chunk(2)
    biases = (None, None) if fused.gate_up_bias is None else fused.gate_up_bias.detach().chunk(2)
    for name, weight, bias in zip(_HALVES, weights, biases):
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                           device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        linear.requires_grad_(fused.gate_up_weight.requires_grad)
        setattr(shell, name, linear)
    shell.down_proj, shell.act_fn = fused.down_proj, fused.act_fn
    return shell


def unfuse_gate_up(model: nn.Module) -> int:
    """Undo fuse_gate_up in place (separate contiguous gate/up linears); returns the count."""
    return _replace_children(model, lambda m: isinstance(m, FusedGateUpMLP), _unfuse)


FUSE_SETTINGS = ("auto", True, False)


def check_fuse_option(setting) -> None:
    if setting not in FUSE_SETTINGS:
        raise ConfigError(f"inference.fuse_gate_up={setting!r} is not one of auto, true, false")


def apply_fuse_option(setting, models) -> int:
    """conf `inference.fuse_gate_up` on the models about to be evaluated (None entries skipped):
    auto fuses where a model has gated MLPs, true requires them, false leaves the models as
    they are. Returns how many MLPs were fused in all."""
    check_fuse_option(setting)
    if setting is False:
        return 0
    count = 0
    for model in models:
        if model is None:
            continue
        if setting == "auto" and not any(_is_gated_mlp(m) for m in model.modules()):
            continue
        count += fuse_gate_up(model)
    return count
