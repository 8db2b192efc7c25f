"""PruneNet (Sengupta et al., ICLR 2025): calibration-free FFN pruning with a learned policy.

A RowPolicy scores every row of every layer's FFN1 matrix W_i [m, d]. REINFORCE trains it so
that keeping the top rows preserves W_i's singular-value spectrum: the penalty of layer i is
KS_i = KS(svals(W_i), svals(W_i[keep])). One episode samples a keep set of exactly k rows per
layer from the Plackett-Luce distribution of the scores (Gumbel top-k), returns are discounted
over later layers, G_i = sum_{j>=i} gamma^(j-i) r_j, and layer losses are weighted by depth.
The final mask is the deterministic top-k of the best policy's scores.

`variant=reference` reproduces the authors' code: reward 1/KS, layer weights gamma^i (which
favour early layers), no baseline, and a final mask drawn at random from the policy.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..adapters import FFNAdapter
from ..errors import ConfigError
from ..policy import RowPolicy, load_policy, save_policy
from ..spectrum import ks_statistic, singular_values
from .base import NeuronSelectionMethod, PruneContext

REWARDS = ("neg_ks", "inv_ks")
DEPTH_WEIGHTS = ("linear", "gamma_power", "uniform")
FINAL_MASKS = ("topk", "sample")


def gumbel_topk(scores: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Sample k of m items without replacement from softmax(scores) [..., m] (Plackett-Luce);
    returns indices [..., k] in the order drawn."""
    u = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    return torch.topk(scores.detach() + gumbel, k, dim=-1).indices


def plackett_luce_log_prob(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """log P(order) of drawing `order` [..., k] first-to-last from softmax(scores) [..., m]:
    sum_t s[o_t] - logsumexp(s[j] for j not drawn before t). Differentiable; returns [...]."""
    chosen = scores.gather(-1, order)  # [..., k]
    rest = scores.scatter(-1, order, float("-inf"))  # never-drawn rows
    log_rest = torch.logsumexp(rest, dim=-1, keepdim=True)  # [..., 1]
    # logsumexp of the chosen rows still in the pool at step t: reverse cumulative logsumexp
    log_suffix = torch.logcumsumexp(chosen.flip(-1), dim=-1).flip(-1)  # [..., k]
    return (chosen - torch.logaddexp(log_suffix, log_rest)).sum(-1)


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_i = sum_{j>=i} gamma^(j-i) r_j over the last dimension (layers)."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for i in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., i] + gamma * running
        out[..., i] = running
    return out


def depth_weights(num_layers: int, kind: str, gamma: float) -> torch.Tensor:
    """Per-layer loss weights [L]. linear: 2(i+1)/(L+1), mean 1, later layers weigh more."""
    i = torch.arange(num_layers, dtype=torch.float64)
    if kind == "linear":
        return 2 * (i + 1) / (num_layers + 1)
    if kind == "gamma_power":
        return gamma ** i
    if kind == "uniform":
        return torch.ones(num_layers, dtype=torch.float64)
    raise ConfigError(f"unknown depth_weight '{kind}' (use one of {DEPTH_WEIGHTS})")


class PruneNet(NeuronSelectionMethod):
    def __init__(self, name: str = "prunenet", *, policy: str | None = None, episodes: int = 20,
                 samples_per_episode: int = 4, lr: float = 1e-3, weight_decay: float = 0.01,
                 gamma: float = 0.9, reward: str = "neg_ks", depth_weight: str = "linear",
                 baseline: bool = True, final_mask: str = "topk", policy_dim: int = 64,
                 spectrum: str = "gram"):
        super().__init__(name)
        for value, allowed, what in ((reward, REWARDS, "reward"),
                                     (depth_weight, DEPTH_WEIGHTS, "depth_weight"),
                                     (final_mask, FINAL_MASKS, "final_mask")):
            if value not in allowed:
                raise ConfigError(f"unknown {what} '{value}' (use one of {allowed})")
        if episodes < 1 or samples_per_episode < 1:
            raise ConfigError("episodes and samples_per_episode must be at least 1")
        self.policy_path = policy
        self.episodes, self.samples, self.lr, self.weight_decay = (
            episodes, samples_per_episode, lr, weight_decay)
        self.gamma, self.reward, self.depth_weight, self.baseline = (
            gamma, reward, depth_weight, baseline)
        self.final_mask, self.policy_dim, self.spectrum = final_mask, policy_dim, spectrum

    # ---- the pieces ---------------------------------------------------------------------------
    def _ks(self, weights: torch.Tensor, keep: torch.Tensor, svals: torch.Tensor) -> torch.Tensor:
        """KS per layer between the dense spectra svals [L, d'] and those of the kept rows.

        weights [L, m, d]; keep [..., L, k] -> [..., L]."""
        rows = torch.gather(weights.expand(*keep.shape[:-1], *weights.shape[-2:]), -2,
                            keep.unsqueeze(-1).expand(*keep.shape, weights.shape[-1]))
        return ks_statistic(svals.expand(*keep.shape[:-1], svals.shape[-1]),
                            singular_values(rows, self.spectrum))

    def _rewards(self, ks: torch.Tensor) -> torch.Tensor:
        return -ks if self.reward == "neg_ks" else 1.0 / ks.clamp_min(1e-6)

    def train(self, weights: torch.Tensor, k: int, ctx: PruneContext
              ) -> tuple[RowPolicy, dict[str, Any]]:
        """REINFORCE on the stacked FFN1 matrices weights [L, m, d]."""
        torch.manual_seed(ctx.seed)
        gen = torch.Generator(device=weights.device).manual_seed(ctx.seed)
        num_layers = weights.shape[0]
        policy = RowPolicy(weights.shape[-1], self.policy_dim).to(weights.device)
        opt = torch.optim.AdamW(policy.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        svals = singular_values(weights, self.spectrum)  # [L, d']
        layer_w = depth_weights(num_layers, self.depth_weight, self.gamma).to(weights.device)
        ema = None
        best_state, best_ks, history = None, float("inf"), []
        for _ in tqdm(range(self.episodes), desc="policy episodes", leave=False):
            scores = policy(weights)  # [L, m]
            with torch.no_grad():
                greedy_ks = self._ks(weights, scores.topk(k, dim=-1).indices, svals).mean().item()
            history.append(greedy_ks)
            if greedy_ks < best_ks:  # this state is the one that produced greedy_ks
                best_ks, best_state = greedy_ks, copy.deepcopy(policy.state_dict())
            sample_scores = scores.unsqueeze(0).expand(self.samples, -1, -1)  # [S, L, m]
            order = gumbel_topk(sample_scores, k, gen)  # [S, L, k]
            log_prob = plackett_luce_log_prob(sample_scores, order)  # [S, L]
            with torch.no_grad():
                returns = discounted_returns(self._rewards(self._ks(weights, order, svals)),
                                             self.gamma)  # [S, L]
                if not self.baseline:
                    advantage = returns
                elif self.samples > 1:  # leave-one-out mean of the other samples
                    advantage = (returns - (returns.sum(0) - returns) / (self.samples - 1))
                else:  # running mean per layer
                    ema = returns[0] if ema is None else 0.9 * ema + 0.1 * returns[0]
                    advantage = returns - ema
            loss = -(layer_w * advantage * log_prob).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # the state after the last update competes too
            final_ks = self._ks(weights, policy(weights).topk(k, dim=-1).indices, svals).mean()
        history.append(final_ks.item())
        if final_ks.item() < best_ks:
            best_ks, best_state = final_ks.item(), copy.deepcopy(policy.state_dict())
        policy.load_state_dict(best_state)
        return policy, {"ks_history": history, "ks_best_train": best_ks}

    # ---- the method interface -----------------------------------------------------------------
    def keep_indices(self, model: nn.Module, adapter: FFNAdapter, k: int, ctx: PruneContext):
        # [L, m, d] stacked FFN1 matrices (all layers of a model share one shape)
        weights = torch.stack([b.ffn1.detach() for b in adapter.blocks(model)]).float()
        weights = weights.to(ctx.device)
        started = time.perf_counter()
        if self.policy_path:
            policy, meta = load_policy(self.policy_path, weights.shape[-1])
            policy = policy.to(ctx.device)
            report: dict[str, Any] = {"policy_source": str(self.policy_path),
                                      "policy_train_ratio": meta.get("train_ratio"),
                                      "policy_trained_on": meta.get("model"),
                                      "policy_train_seconds": 0.0}
        else:
            policy, info = self.train(weights, k, ctx)
            seconds = time.perf_counter() - started
            report = {"policy_source": "trained", "policy_train_ratio": ctx.ratio,
                      "policy_train_seconds": seconds, **info}
            if ctx.run_dir is not None:
                save_policy(policy, ctx.run_dir, {
                    "model": ctx.model_name, "train_ratio": ctx.ratio, "seed": ctx.seed,
                    "episodes": self.episodes, "train_seconds": seconds, **info})
        with torch.no_grad():
            scores = policy(weights)  # [L, m]
            if self.final_mask == "topk":
                keep = scores.topk(k, dim=-1).indices
            else:  # the reference code's random final draw
                gen = torch.Generator(device=weights.device).manual_seed(ctx.seed)
                keep = gumbel_topk(scores, k, gen)
            svals = singular_values(weights, self.spectrum)
            ks = self._ks(weights, keep, svals)
        report.update(policy_params=policy.num_parameters(), ks_per_layer=ks.tolist(),
                      ks_mean_dense_vs_pruned=ks.mean().item())
        return [idx.cpu() for idx in keep], report
