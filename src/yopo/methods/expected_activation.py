"""Calibration-free FFN neuron scores from an input model built out of the weights alone.

Why weight norms fail on SmolLM2 (docs/calibration_free.md has the evidence): the residual
stream carries a large constant part (a "DC" mean, concentrated on a few outlier channels) in
every token. Through a gate row g_j it acts as a per-neuron bias b_j = g_j . mu. Neurons whose
gate reads the DC with the right sign are always on (often with *small* rows) and carry much of
the layer's output; large-norm rows tend to sit on the negative side (mostly off). Any rule that
ignores mu ranks them backwards in the deeper layers, and dropping always-on neurons shifts the
stream's DC downstream.

So every neuron is scored by the size of what it writes under a Gaussian input model whose
mean is estimated from the weights:

    x ~ N(mu_l, noise_var * diag(w_l^2))     (the FFN input: RMSNorm(h) * w_l, w_l = norm weight)
    score_j = ||W_out[:, j]||_2 * E| act(g_j . x) * (u_j . x) |     (gated FFN; act(f_j . x + c_j)
                                                                    for fc1-style FFNs)

A LayerNorm (Phi, OPT) adds its bias beta_l after the weight: the FFN input is
LayerNorm(h) * w_l + beta_l, so its mean is mu_l + beta_l, whatever model of mu_l is used below.

The noise's shape is set by `noise_power` p: the x-space variance of channel c is
proportional to |w_c|^(2 (1 - p)) at the same total variance noise_var * ||w_l||^2. p = 0 is noise
isotropic *before* the norm weight (the formula above); p = 1 isotropic after it; p > 1 puts more
noise where the norm weight is small, because the norm weight compensates the stream: it is small
on the channels where the normalised stream varies most (Spearman 0.81-0.97 with 1 / w^2 in
layers 1-22 of SmolLM2, docs/calibration_free.md). The mean mu_l comes from:
- layers >= 1 (`mean: gate_direction`): the top right singular vector v_l of the row-normalised
  gate matrix. Every row shares a component along the DC, so this is its direction. The sign of
  v_l is synchronised along depth (the DC persists in the residual stream: adjacent layers'
  directions, mapped back through their norm weights, point the same way), the whole model's
  sign is fixed by the consensus that most neurons are negatively biased (mostly off), and the
  directions are averaged over +-`smoothing` layers. mu_l = bias_scale * sqrt(noise_var) * ||w_l||
  * v_l: the DC's size relative to the noise is a hyperparameter.
- the first layer (`first_layer_mean: attention`): the token-independent output of the first
  attention branch, W_o W_v (w . z_bar) for the mean RMS-normalised token embedding z_bar (the
  value path maps every token to nearly the same vector there), divided by the input's RMS. Used
  where the first FFN reads after an attention branch (LLaMA/OPT); otherwise gate_direction.

`allocation: protect_ends` keeps the listed layers (default first and last, the fragile ones)
dense and prunes the others more, for the same total number of FFN neurons; `allocation: share`
also keeps them dense and sizes the others by one global ranking of each neuron's share of its
layer's total score (share_widths). Every layer is sliced to its own width (parameters and
compute really go); one transformers config holds one FFN width, so the checkpoint is a
SlicedForCausalLM (modeling_yopo_sliced.py, shipped in the folder) that reloads with
`trust_remote_code=True`. `allocation: uniform` slices to one width and saves a standard
checkpoint, as every other FFN method.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..adapters import FFNAdapter, get_adapter
from ..errors import ConfigError
from ..modeling.modeling_yopo_sliced import SlicedForCausalLM
from ..progress import progress
from .base import NeuronSelectionMethod, PruneContext, kept_width

MEANS = ("none", "gate_direction")
FIRST_LAYER_MEANS = ("attention", "gate_direction")
STATISTICS = ("abs", "rms")
ALLOCATIONS = ("uniform", "protect_ends", "share")


def activation_function(model: nn.Module, adapter: FFNAdapter):
    """The FFN nonlinearity the model's config names (under the adapter's activation_key)."""
    from transformers.activations import ACT2FN

    name = adapter.activation_name(model)
    if name not in ACT2FN:
        raise ConfigError(f"expected_activation: unknown FFN activation {name!r} in the model "
                          f"config ({adapter.activation_key})")
    return ACT2FN[name]


def standard_normal_pairs(samples: int, seed: int = 0) -> torch.Tensor:
    """Fixed standard-normal draws [2, samples] (float64): the expectations below are
    deterministic averages over them. Antithetic (z and -z both present), so odd moments vanish."""
    half = torch.randn(2, (samples + 1) // 2, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)
    return torch.cat([half, -half], dim=1)[:, :samples]


def expected_output_size(readers: list[torch.Tensor], biases: list[torch.Tensor | None],
                         mean: torch.Tensor, var: torch.Tensor, act, z: torch.Tensor,
                         statistic: str = "abs") -> torch.Tensor:
    """E|h_j| (statistic=abs) or sqrt(E h_j^2) (rms) per neuron [m] for x ~ N(mean, diag(var)).

    readers: [gate [m, d], up [m, d]] (h = act(gate x) * (up x)) or [fc1 [m, d]] (h = act(fc1 x));
    biases: their biases [m] or None; mean, var: [d]; z: standard_normal_pairs [2, S].
    The pre-activations are jointly Gaussian: a_j = g_j.x + c_j has mean g_j.mean + c_j and
    variance sum_c g_jc^2 var_c; b_j likewise, and corr(a_j, b_j) from sum_c g_jc u_jc var_c.
    """
    rows = [r.double() for r in readers]
    mean, var = mean.double(), var.double()
    means = [r @ mean + (b.double() if b is not None else 0.0) for r, b in zip(rows, biases)]
    sd_a = (rows[0].pow(2) @ var).clamp_min(1e-30).sqrt()  # [m]
    a = means[0][:, None] + sd_a[:, None] * z[0]  # [m, S]
    h = act(a)
    if len(rows) > 1:
        sd_b = (rows[1].pow(2) @ var).clamp_min(1e-30).sqrt()
        rho = ((rows[0] * rows[1]) @ var / (sd_a * sd_b)).clamp(-1.0, 1.0)[:, None]
        b = means[1][:, None] + sd_b[:, None] * (rho * z[0] + (1 - rho.pow(2)).sqrt() * z[1])
        h = h * b
    return h.abs().mean(1) if statistic == "abs" else h.pow(2).mean(1).sqrt()


def gate_directions(ffn1: list[torch.Tensor], norm_weights: list[torch.Tensor],
                    smoothing: int = 0, min_norm_weight: float = 0.05) -> list[torch.Tensor]:
    """Unit DC directions [d] per layer (in the FFN input's space, after the norm weight).

    ffn1: each layer's FFN1/gate weight [m, d]; norm_weights: each layer's norm weight [d].
    1. v_l = top right singular vector of FFN1 with unit rows (outlier rows cannot take it over).
    2. Signs along depth: the DC lives in the residual stream, so v_l / w_l and v_l+1 / w_l+1
       (channels where both |w| > min_norm_weight) should agree; flip v_l+1 when they do not.
    3. Global sign: most neurons are mostly off, so the mean projection sum_l mean_j (F_l v_l)_j
       of all rows on the DC must be negative.
    4. smoothing > 0: average the residual-space directions v_j / w_j over layers l-s..l+s,
       map back with w_l and renormalise (the DC changes slowly with depth).
    """
    directions = []
    for weight in ffn1:
        rows = weight.double() / weight.double().norm(dim=1, keepdim=True).clamp_min(1e-30)
        # top eigenvector of the [d, d] Gram matrix = top right singular vector, far cheaper
        directions.append(torch.linalg.eigh(rows.T @ rows).eigenvectors[:, -1])
    w = [nw.double() for nw in norm_weights]
    sign = [1.0]
    for i in range(len(directions) - 1):
        ok = (w[i].abs() > min_norm_weight) & (w[i + 1].abs() > min_norm_weight)
        agree = (directions[i][ok] / w[i][ok]) @ (directions[i + 1][ok] / w[i + 1][ok])
        sign.append(sign[-1] * (1.0 if agree >= 0 else -1.0))
    vote = sum(s * (f.double() @ v).mean() for s, f, v in zip(sign, ffn1, directions))
    directions = [v * s * (-1.0 if vote > 0 else 1.0) for v, s in zip(directions, sign)]
    if smoothing <= 0:
        return directions
    residual = []  # unit residual-space directions, zero where the norm weight hides a channel
    for v, nw in zip(directions, w):
        r = torch.where(nw.abs() > min_norm_weight, v / nw, torch.zeros_like(v))
        residual.append(r / r.norm().clamp_min(1e-30))
    smoothed = []
    for i, nw in enumerate(w):
        lo, hi = max(0, i - smoothing), min(len(w), i + smoothing + 1)
        v = nw * torch.stack(residual[lo:hi]).sum(0)
        smoothed.append(v / v.norm().clamp_min(1e-30))
    return smoothed


def _normalise(x: torch.Tensor, norm: nn.Module, kind: str, eps: float) -> torch.Tensor:
    """What the norm module does to rows x [n, d], recomputed in float64."""
    x = x.double()
    if kind == "rms":
        out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    else:
        x = x - x.mean(-1, keepdim=True)
        out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    out = out * norm.weight.double()
    if getattr(norm, "bias", None) is not None:
        out = out + norm.bias.double()
    return out


@torch.no_grad()
def first_attention_mean(model: nn.Module, adapter: FFNAdapter) -> tuple[torch.Tensor, float] | None:
    """(mean [d], rms) of the residual stream that the first FFN reads, from the weights: the
    token-independent output of the first attention branch (value then output projection of the
    mean normalised token embedding; attention mixes tokens but every token's value carries this
    part, so the softmax weights do not matter) and the stream's RMS sqrt(E||e_t||^2/d +
    ||mean||^2/d). None where the first FFN does not read after an attention branch."""
    try:
        layout = adapter.residual_layout(model)
    except ConfigError:
        return None
    first = layout.layers[0]
    ffn_reader = adapter.blocks(model)[0].ffn_in[0]
    if len(first) < 2 or ffn_reader not in [model.get_submodule(n) for n in first[1].readers]:
        return None  # parallel attention/FFN (Phi): the first FFN sees the embeddings only
    attn = first[0]
    value, output = (model.get_submodule(attn.readers[-1]), model.get_submodule(attn.writers[0]))
    embed = model.get_submodule(layout.embeddings[0]).weight.detach()  # [V, d]
    z_bar = _normalise(embed, model.get_submodule(attn.norm), layout.norm_kind,
                       layout.norm_eps).mean(0)  # [d]
    v = value.weight.double() @ z_bar  # [kv_heads * head_dim]
    if value.bias is not None:
        v = v + value.bias.double()
    groups = output.weight.shape[1] // v.numel()  # grouped-query attention shares kv heads
    if groups > 1:
        heads = model.config.num_key_value_heads
        v = v.view(heads, -1).repeat_interleave(groups, 0).flatten()
    mean = output.weight.double() @ v
    if output.bias is not None:
        mean = mean + output.bias.double()
    rms = math.sqrt(embed.double().pow(2).mean().item() + mean.pow(2).mean().item())
    return mean, rms


def layer_widths(num_layers: int, width: int, ratio: float, round_to: int,
                 protected: list[int]) -> list[int]:
    """Kept neurons per layer: `protected` layers (negative = from the end) stay dense, the
    others share the rest of the budget num_layers * kept_width(width, ratio) evenly."""
    k = kept_width(width, ratio, round_to)
    dense = sorted({p % num_layers for p in protected})
    if len(dense) >= num_layers:
        raise ConfigError("protected_layers covers every layer: nothing would be pruned")
    rest = (num_layers * k - len(dense) * width) // (num_layers - len(dense))
    rest = rest // round_to * round_to
    if rest < round_to:
        raise ConfigError(f"ratio={ratio} with protected_layers={protected} leaves the other "
                          "layers no neurons; protect fewer layers or lower the ratio")
    return [width if i in dense else rest for i in range(num_layers)]


def share_widths(scores: torch.Tensor, ratio: float, round_to: int, protected: list[int],
                 min_keep: float) -> list[int]:
    """Kept neurons per layer from one global ranking of each neuron's share of its layer's
    total score (scores [L, m]): a layer whose score mass sits in few neurons gives up more.
    `protected` layers stay dense, every layer keeps at least min_keep * m, and the total is
    at most num_layers * kept_width(m, ratio) (widths rounded down to round_to)."""
    num_layers, width = scores.shape
    budget = num_layers * kept_width(width, ratio, round_to)
    floor = max(round_to, math.ceil(min_keep * width / round_to) * round_to)
    dense = sorted({p % num_layers for p in protected})
    if len(dense) * width + (num_layers - len(dense)) * floor > budget:
        raise ConfigError(f"ratio={ratio} with protected_layers={protected} and "
                          f"min_keep={min_keep} exceeds the neuron budget; lower one of them")
    share = scores / scores.sum(dim=1, keepdim=True)  # [L, m]
    ranked = share.sort(dim=1, descending=True).values
    ranked[:, :floor] = math.inf  # the floor is kept whatever its share
    ranked[dense] = math.inf
    taken = ranked.flatten().topk(budget).indices // width  # layer of each kept neuron
    widths = torch.bincount(taken, minlength=num_layers).tolist()
    return [min(width, w // round_to * round_to) for w in widths]


class ExpectedActivation(NeuronSelectionMethod):
    uses_seed = False  # deterministic: no random draw depends on the run's seed

    def __init__(self, name: str = "expected_activation", *, mean: str = "gate_direction",
                 first_layer_mean: str = "attention", fold_norm: bool = True,
                 noise_var: float = 0.05, bias_scale: float = 0.85, noise_power: float = 1.25,
                 smoothing: int = 4,
                 first_layer_noise_var: float = 0.05, statistic: str = "abs",
                 allocation: str = "protect_ends", protected_layers: list[int] | None = None,
                 min_keep: float = 0.3, samples: int = 2048):
        super().__init__(name)
        for value, allowed, what in ((mean, MEANS, "mean"),
                                     (first_layer_mean, FIRST_LAYER_MEANS, "first_layer_mean"),
                                     (statistic, STATISTICS, "statistic"),
                                     (allocation, ALLOCATIONS, "allocation")):
            if value not in allowed:
                raise ConfigError(f"expected_activation: unknown {what} '{value}' "
                                  f"(use one of {allowed})")
        if noise_var <= 0 or first_layer_noise_var <= 0 or samples < 2 or smoothing < 0:
            raise ConfigError("expected_activation: noise_var and first_layer_noise_var must be "
                              "positive, samples at least 2, smoothing at least 0")
        self.mean, self.first_layer_mean, self.fold_norm = mean, first_layer_mean, fold_norm
        self.noise_var, self.bias_scale, self.smoothing = noise_var, bias_scale, smoothing
        self.noise_power = float(noise_power)
        self.first_layer_noise_var, self.statistic = first_layer_noise_var, statistic
        self.allocation = allocation
        self.protected_layers = list(protected_layers if protected_layers is not None else [0, -1])
        self.min_keep = float(min_keep)
        self.samples = samples

    # ---- scores -------------------------------------------------------------------------------
    def dc_mean(self, direction: torch.Tensor, norm_weight: torch.Tensor) -> torch.Tensor:
        """The input model's mean [d] along a DC direction [d]: its size relative to the noise
        is bias_scale (mu = bias_scale * sqrt(noise_var) * ||w|| * v)."""
        return self.bias_scale * math.sqrt(self.noise_var) * norm_weight.norm() * direction

    def noise_variance(self, var: float, norm_weight: torch.Tensor) -> torch.Tensor:
        """The input model's x-space noise variance per channel [d]: proportional to
        |w|^(2 (1 - noise_power)) for the norm weight w [d], with total variance var * ||w||^2
        whatever the shape (so the DC's size relative to the noise keeps its meaning). A few norm
        weights are tiny or negative: the shape uses w^2, floored so that w = 0 stays finite."""
        w2 = norm_weight.double().pow(2)
        shape = w2.clamp_min(1e-12).pow(1.0 - self.noise_power)
        return var * shape * (w2.sum() / shape.sum())

    @torch.no_grad()
    def scores(self, model: nn.Module, adapter: FFNAdapter) -> tuple[torch.Tensor, dict[str, Any]]:
        """score [L, m] (float64) and what the input model used, per the module docstring."""
        blocks = adapter.blocks(model)
        d = blocks[0].ffn1.shape[1]
        norms = [b.norm_weight.detach().double() if b.norm_weight is not None and self.fold_norm
                 else torch.ones(d, dtype=torch.float64) for b in blocks]
        ffn1 = [b.ffn1.detach() for b in blocks]
        means = [torch.zeros(d, dtype=torch.float64) for _ in blocks]
        if self.mean == "gate_direction":
            dirs = gate_directions(ffn1, norms, self.smoothing)
            means = [self.dc_mean(v, w) for v, w in zip(dirs, norms)]
        noise = [self.noise_variance(self.noise_var, w) for w in norms]
        first = "gate_direction" if self.mean != "none" else "none"
        if self.mean != "none" and self.first_layer_mean == "attention":
            found = first_attention_mean(model, adapter)
            if found is not None:
                mean, rms = found
                means[0] = norms[0] * mean / rms
                noise[0] = self.noise_variance(self.first_layer_noise_var, norms[0])
                first = "attention"
        if self.fold_norm:  # the norm's bias is part of the affine map folded into the input
            means = [mu + b.norm_bias.detach().double() if b.norm_bias is not None else mu
                     for mu, b in zip(means, blocks)]
        act, z = activation_function(model, adapter), standard_normal_pairs(self.samples)
        rows = []
        for block, mu, var in progress(list(zip(blocks, means, noise)),
                                       desc="expected activation scores (layers)"):
            size = expected_output_size([lin.weight.detach() for lin in block.ffn_in],
                                        [lin.bias.detach() if lin.bias is not None else None
                                         for lin in block.ffn_in], mu, var, act, z,
                                        self.statistic)
            rows.append(size * block.output_columns().norm(dim=0))
        return torch.stack(rows), {"first_layer_mean_used": first}

    # ---- the method interface -----------------------------------------------------------------
    def keep_indices(self, model, adapter, k, ctx):
        scores, report = self.scores(model, adapter)
        keep = scores.topk(k, dim=-1).indices.cpu()
        return [idx.sort().values for idx in keep], report

    def prune(self, model: nn.Module, adapter: FFNAdapter, ctx: PruneContext) -> dict[str, Any]:
        if self.allocation == "uniform":
            return super().prune(model, adapter, ctx)
        width = adapter.ffn_width(model)
        scores, report = self.scores(model, adapter)  # [L, m]
        if self.allocation == "share":
            widths = share_widths(scores, ctx.ratio, ctx.round_to, self.protected_layers,
                                  self.min_keep)
        else:
            widths = layer_widths(len(scores), width, ctx.ratio, ctx.round_to,
                                  self.protected_layers)
        keep = [row.topk(k).indices.sort().values.cpu() for row, k in zip(scores, widths)]
        adapter.slice_ffn(model, keep, uniform=False)
        return {"ffn_width_dense": width,
                "ratio_achieved": 1.0 - sum(widths) / (width * len(widths)),
                "ffn_widths_kept": widths, "ratio_semantics": "ffn_width", **report}

    def checkpoint_model(self, model: nn.Module) -> nn.Module:
        """Per-layer widths do not fit a transformers config (one FFN width): such a model is
        saved as a SlicedForCausalLM, which records the narrowed layers' shapes and reloads
        with trust_remote_code=True. Equal widths stay a standard checkpoint."""
        widths = {block.width for block in get_adapter(model).blocks(model)}
        return model if len(widths) == 1 else SlicedForCausalLM.wrap(model)
