"""SliceGPT (Ashkboos et al., ICLR 2024): rotate the residual stream into its principal
components on calibration text and delete the least-used directions.

The ratio is the fraction of the hidden dimension D removed: the stream keeps d' =
kept_width(D, ratio, round_to) dimensions from the embeddings through every layer. As in the
authors' code (`do_slice_head=False`, what their published numbers use), the last layer's output,
the final norm and the head keep all D dimensions unless `slice_head=true`.

1. Untie the embeddings and the head: they will be rotated by different matrices.
2. Fold every norm that reads the stream into the linears behind it (`readers`): W <- W diag(g),
   b <- b + W beta, and replace the norm by a scale-free RMSNorm (SlicedNorm). LayerNorm
   (Phi, OPT) also subtracts the mean: every linear and embedding that writes the stream
   (`writers`) is centred instead, W <- (I - 11^T/D) W, so the stream is always mean-free and
   LayerNorm(x) = RMSNorm(x). The model is unchanged, and now invariant to x -> x Q (Q orthogonal).
3. Sequentially, at every place a norm reads the stream (a branch input; the head input), run the
   already-rotated model on calibration text, take the stream X there in the original basis,
   Q = eigenvectors of X^T X (descending eigenvalues), and rotate: embeddings E Q (first place),
   the branch's readers W Q, the previous branch's writers Q^T W. The stream that bypasses a branch
   goes from the branch's input basis Q_in to its output basis Q_out: shortcut S = Q_in^T Q_out.
   Until the end, slicing is done by zeroing: the rotations use Q with columns d'.. set to 0.
   Each place's stream is computed with everything before it already rotated and sliced.
4. Cut every matrix to d' (readers' columns, writers' rows, embeddings' columns, shortcuts).

With ratio 0 nothing is cut and the logits equal the dense ones up to float error. The result is
a `SlicedForCausalLM` checkpoint (modeling_yopo_sliced.py travels with it). Parameters: the
stream-facing side of every linear shrinks from D to d', norms lose their weights, each branch
gains a d' x d' shortcut (d' x D for the last with an unsliced head), and an untied head adds
V D (V d' if sliced): tied-embedding models (SmolLM2) grow at small ratios.
Family-specific names come from adapter.residual_layout.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..adapters import FFNAdapter
from ..adapters.base import ResidualBranch, ResidualLayout
from ..data.calibration import Calibration, generation_options_not_applying
from ..modeling.modeling_yopo_sliced import SlicedForCausalLM, install_norm, set_parameter
from ..progress import progress
from .base import PruneContext, PruningMethod, kept_width


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def _weight(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_submodule(name).weight.detach().double()


def _set(model: nn.Module, name: str, value: torch.Tensor, like: torch.Tensor) -> None:
    set_parameter(model, name, value.to(like.dtype).contiguous())


def _branches_and_head(layout: ResidualLayout) -> list[ResidualBranch]:
    """Every place a norm reads the stream; the head is a branch without writers."""
    return [b for layer in layout.layers for b in layer] + [
        ResidualBranch(layout.final_norm, [layout.head], [])]


def untie_head(model: nn.Module, layout: ResidualLayout) -> bool:
    """Give the head its own weight if it shares the input embedding's; True if it did."""
    head = model.get_submodule(layout.head)
    tied = any(head.weight is model.get_submodule(e).weight for e in layout.embeddings)
    if tied:
        set_parameter(model, f"{layout.head}.weight", head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    if hasattr(model, "all_tied_weights_keys"):  # transformers re-ties by this map: refresh it
        model.all_tied_weights_keys = model.get_expanded_tied_weights_keys(all_submodels=True)
    return tied


def fold_norms(model: nn.Module, layout: ResidualLayout, dense_dim: int) -> None:
    """Step 2 of the module docstring, in place; the model's function is unchanged."""
    for branch in _branches_and_head(layout):
        norm = model.get_submodule(branch.norm)
        scale = norm.weight.detach().double() if getattr(norm, "weight", None) is not None else None
        shift = norm.bias.detach().double() if getattr(norm, "bias", None) is not None else None
        for name in branch.readers:
            linear = model.get_submodule(name)
            w, b = _weight(model, name), linear.bias  # w [out, D]
            bias = None if b is None else b.detach().double()
            if shift is not None:  # W (g * z + beta) + b = (W diag g) z + (W beta + b)
                bias = (0.0 if bias is None else bias) + w @ shift
            if scale is not None:
                w = w * scale
            _set(model, f"{name}.weight", w, linear.weight)
            if bias is not None:
                _set(model, f"{name}.bias", bias, linear.weight)
        norm = install_norm(model, branch.norm, dense_dim, layout.norm_eps,
                            shortcut_shape=[dense_dim, dense_dim] if branch.writers else None,
                            shortcut_writer=branch.writers[-1] if branch.writers else None)
        if norm.shortcut is not None:  # identity until the branch is rotated
            like = model.get_submodule(branch.readers[0]).weight
            set_shortcut(model, branch.norm, torch.eye(dense_dim, device=like.device), like.dtype)
    if layout.norm_kind == "layernorm":  # centre everything written to the stream
        for name in layout.embeddings:  # rows [V, D] are stream vectors
            e = _weight(model, name)
            _set(model, f"{name}.weight", e - e.mean(1, keepdim=True),
                 model.get_submodule(name).weight)
        for branch in _branches_and_head(layout):
            for name in branch.writers:  # W [D, in]: columns are stream vectors
                linear = model.get_submodule(name)
                w = _weight(model, name)
                _set(model, f"{name}.weight", w - w.mean(0, keepdim=True), linear.weight)
                if linear.bias is not None:
                    b = linear.bias.detach().double()
                    _set(model, f"{name}.bias", b - b.mean(), linear.weight)


def principal_basis(second_moment: torch.Tensor, width: int
                    ) -> tuple[torch.Tensor, float]:
    """Q [D, D] (eigenvectors of the second moment X^T X [D, D], largest eigenvalue first) with
    columns width.. zeroed, and the fraction of the stream's energy the kept columns hold."""
    values, vectors = torch.linalg.eigh(second_moment)
    values, vectors = values.flip(0), vectors.flip(1)
    vectors[:, width:] = 0.0
    return vectors, (values[:width].sum() / values.sum()).item()


def rotate_readers(model: nn.Module, names: list[str], q: torch.Tensor) -> None:
    for name in names:  # y = W x, x -> x Q: W [out, D] -> W Q
        _set(model, f"{name}.weight", _weight(model, name) @ q, model.get_submodule(name).weight)


def rotate_writers(model: nn.Module, names: list[str], q: torch.Tensor) -> None:
    for name in names:  # output y [D] -> y Q: W [D, in] -> Q^T W, b -> b Q
        linear = model.get_submodule(name)
        _set(model, f"{name}.weight", q.T @ _weight(model, name), linear.weight)
        if linear.bias is not None:
            _set(model, f"{name}.bias", linear.bias.detach().double() @ q, linear.weight)


def set_shortcut(model: nn.Module, norm_name: str, matrix: torch.Tensor,
                 dtype: torch.dtype | None = None) -> None:
    norm = model.get_submodule(norm_name)
    dtype = dtype or norm.shortcut.dtype
    norm.shortcut = nn.Parameter(matrix.to(dtype).contiguous(), requires_grad=False)


def layer_inputs(model: nn.Module, layer: nn.Module, batches: torch.Tensor, device: str
                 ) -> list[tuple[torch.Tensor, tuple, dict]]:
    """(hidden [1, T, D], other args, kwargs) with which the model calls `layer` on each batch
    (the first layer: attention masks, rotary embeddings, ... are the same for every layer)."""
    captured = []

    def hook(module, args, kwargs):
        if args:
            captured.append((args[0], args[1:], kwargs))
        else:
            kwargs = dict(kwargs)
            captured.append((kwargs.pop("hidden_states"), (), kwargs))
        raise _Stop

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in batches:
            try:
                model(input_ids=ids[None].to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def run_layer(layer: nn.Module, inputs, stop_at: nn.Module | None) -> list[torch.Tensor]:
    """The stream after a layer (or, with `stop_at`, at that norm's input) for each input."""
    outputs = []

    def hook(module, args):
        outputs.append(args[0])
        raise _Stop

    handle = stop_at.register_forward_pre_hook(hook) if stop_at is not None else None
    try:
        for hidden, args, kwargs in inputs:
            try:
                out = layer(hidden, *args, **kwargs)
                outputs.append(out[0] if isinstance(out, tuple) else out)
            except _Stop:
                pass
    finally:
        if handle is not None:
            handle.remove()
    return outputs


def second_moment(streams: list[torch.Tensor]) -> torch.Tensor:
    """sum over tokens of x^T x, [D, D] float64."""
    total = 0.0
    for x in streams:
        x = x.reshape(-1, x.shape[-1]).double()
        total = total + x.T @ x
    return total


@torch.no_grad()
def rotate_and_slice(model: nn.Module, adapter: FFNAdapter, layout: ResidualLayout,
                     batches: torch.Tensor, width: int, head_width: int, device: str
                     ) -> list[float]:
    """Steps 3 and 4 of the module docstring, in place, on a model with folded norms. The head
    input (the last layer's output) keeps head_width dimensions (width or all D).
    Returns the fraction of the stream's energy kept at each place, in order."""
    layers = adapter.decoder_layers(model)
    inputs = layer_inputs(model, layers[0], batches, device)
    q, kept = principal_basis(second_moment([h for h, _, _ in inputs]), width)
    energy = [kept]
    for name in layout.embeddings:
        _set(model, f"{name}.weight", _weight(model, name) @ q, model.get_submodule(name).weight)
    for layer, branches in progress(list(zip(layers, layout.layers)),
                                    desc="SliceGPT layers (rotate and slice)"):
        inputs = [((hidden.double() @ q).to(hidden.dtype), args, kwargs)
                  for hidden, args, kwargs in inputs]
        for j, branch in enumerate(branches):
            rotate_readers(model, branch.readers, q)
            set_shortcut(model, branch.norm, q.T)  # the bypass returns to the original basis
            nxt = model.get_submodule(branches[j + 1].norm) if j + 1 < len(branches) else None
            streams = run_layer(layer, inputs, stop_at=nxt)  # original basis [.., D]
            last = layer is layers[-1] and nxt is None
            q_out, kept = principal_basis(second_moment(streams), head_width if last else width)
            energy.append(kept)
            rotate_writers(model, branch.writers, q_out)
            set_shortcut(model, branch.norm, q.T @ q_out)
            q = q_out
        inputs = [(s, args, kwargs) for s, (_, args, kwargs) in zip(streams, inputs)]
    rotate_readers(model, [layout.head], q)
    slice_stream(model, layout, width, head_width)
    return energy


def slice_stream(model: nn.Module, layout: ResidualLayout, width: int, head_width: int) -> None:
    """Cut the zeroed directions: every matrix keeps `width` of its stream-facing D, except
    that the last layer's writers and the head keep head_width."""
    for name in layout.embeddings:
        e = model.get_submodule(name).weight.detach()
        set_parameter(model, f"{name}.weight", e[:, :width].contiguous())
    branches = _branches_and_head(layout)
    last = branches[-2]  # the last layer's last branch writes the head's input
    for branch in branches:
        read = head_width if branch is branches[-1] else width
        written = head_width if branch is last else width
        for name in branch.readers:
            w = model.get_submodule(name).weight.detach()
            set_parameter(model, f"{name}.weight", w[:, :read].contiguous())
        for name in branch.writers:
            linear = model.get_submodule(name)
            set_parameter(model, f"{name}.weight", linear.weight.detach()[:written].contiguous())
            if linear.bias is not None:
                set_parameter(model, f"{name}.bias", linear.bias.detach()[:written].contiguous())
        norm = model.get_submodule(branch.norm)
        if norm.shortcut is not None:
            set_shortcut(model, branch.norm, norm.shortcut.detach()[:width, :written])
    if head_width > width:  # the last layer's extra coordinates go around its residual add
        install_norm(model, layout.final_norm, model.get_submodule(layout.final_norm).dense_dim,
                     layout.norm_eps, overflow_writers=last.writers, stream_width=width)


class SliceGPT(PruningMethod):
    uses_seed = False  # deterministic: no random draw depends on the run's seed
    options_not_applying = staticmethod(generation_options_not_applying)

    def __init__(self, name: str = "slicegpt", *, slice_head: bool = False,
                 calibration_source: str = "local", calibration_tokens: int = 32768,
                 calibration_seq_len: int = 2048, generation_temperature: float = 1.0,
                 generation_seed: int = 0):
        super().__init__(name)
        self.slice_head = bool(slice_head)
        self.calibration = Calibration(calibration_source, int(calibration_tokens),
                                       int(calibration_seq_len), float(generation_temperature),
                                       int(generation_seed))

    def prune(self, model: nn.Module, adapter: FFNAdapter, ctx: PruneContext) -> dict[str, Any]:
        layout = adapter.residual_layout(model)  # fails early on unsupported architectures
        dense_dim = adapter.hidden_size(model)
        width = kept_width(dense_dim, ctx.ratio, ctx.round_to)
        head_width = width if self.slice_head else dense_dim
        batches = self.calibration.batches(ctx, model)  # before anything changes the model
        untied = untie_head(model, layout)
        fold_norms(model, layout, dense_dim)
        energy = rotate_and_slice(model, adapter, layout, batches, width, head_width, ctx.device)
        return {"ratio_semantics": "hidden_dim", "ratio_achieved": 1.0 - width / dense_dim,
                "hidden_size_dense": dense_dim, "hidden_size_sliced": width,
                "head_input_size": head_width, "embeddings_untied": untied,
                **self.calibration.report(),
                "pca_energy_kept": energy, "pca_energy_kept_min": min(energy)}

    def checkpoint_model(self, model: nn.Module) -> SlicedForCausalLM:
        """What to save_pretrained: the sliced model (not a standard architecture any more)
        wrapped as a SlicedForCausalLM, which writes modeling_yopo_sliced.py and auto_map."""
        return SlicedForCausalLM.wrap(model)
