"""PruneNet (Sengupta et al., ICLR 2025): calibration-free FFN pruning with a learned policy.

A RowPolicy scores every row of every layer's FFN1 matrix W_i [m, d]. REINFORCE trains it so
that keeping the top rows preserves W_i's singular-value spectrum: the penalty of layer i is
KS_i = KS(svals(W_i), svals(W_i[keep])). One episode samples a keep set of exactly k rows per
layer from the Plackett-Luce distribution of the scores (Gumbel top-k), returns are discounted
over later layers, G_i = sum_{j>=i} gamma^(j-i) r_j, and layer losses are weighted by depth.
The final mask is the deterministic top-k of the best policy's scores.

The options reward=inv_ks, depth_weight=gamma_power, baseline=false and final_mask=sample take
single choices of the authors' code into this algorithm (ablations); the authors' algorithm
itself, policy and update included, is method=prunenet_reference (prunenet_reference.py).
"""
from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from typing import Any, Sequence

import torch
from torch import nn

from ...adapters import FFNAdapter
from ...errors import ConfigError
from ...progress import progress
from ..base import NeuronSelectionMethod, PruneContext
from .policy import RowPolicy, reuse_or_train
from .spectrum import (RowSubsetKS, check_spectrum_method, default_workers, layer_batches,
                        single_threaded_torch)

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
    takes_policy = True
    training_options = ("episodes", "samples_per_episode", "lr", "weight_decay", "gamma",
                        "reward", "depth_weight", "baseline", "policy_dim")
    runtime_options = ("layer_batch", "spectrum_workers")

    def __init__(self, name: str = "prunenet", *, episodes: int = 20,
                 samples_per_episode: int = 4, lr: float = 1e-3, weight_decay: float = 0.01,
                 gamma: float = 0.9, reward: str = "neg_ks", depth_weight: str = "linear",
                 baseline: bool = True, final_mask: str = "topk", policy_dim: int = 64,
                 spectrum: str = "gram", layer_batch: int = 4,
                 spectrum_workers: int | None = None):
        super().__init__(name)
        for value, allowed, what in ((reward, REWARDS, "reward"),
                                     (depth_weight, DEPTH_WEIGHTS, "depth_weight"),
                                     (final_mask, FINAL_MASKS, "final_mask")):
            if value not in allowed:
                raise ConfigError(f"unknown {what} '{value}' (use one of {allowed})")
        if episodes < 1 or samples_per_episode < 1:
            raise ConfigError("episodes and samples_per_episode must be at least 1")
        if layer_batch < 1 or (spectrum_workers is not None and spectrum_workers < 1):
            raise ConfigError("layer_batch and spectrum_workers must be positive integers "
                              "(spectrum_workers: null picks a default)")
        self.episodes, self.samples, self.lr, self.weight_decay = (
            episodes, samples_per_episode, lr, weight_decay)
        self.gamma, self.reward, self.depth_weight, self.baseline = (
            gamma, reward, depth_weight, baseline)
        self.final_mask, self.policy_dim = final_mask, policy_dim
        self.spectrum = check_spectrum_method(spectrum)
        self.layer_batch, self.spectrum_workers = layer_batch, spectrum_workers

    # ---- the pieces ---------------------------------------------------------------------------
    def penalty(self, layers: Sequence[torch.Tensor], k: int, device) -> RowSubsetKS:
        """KS per layer of keeping k rows of each FFN1 matrix (layers: L tensors [m, d])."""
        workers = self.spectrum_workers or default_workers(device)
        with self._threads(torch.device(device)):  # its setup computes the dense spectra
            return RowSubsetKS(layers, k, self.spectrum, device, self.layer_batch, workers)

    @staticmethod
    def _threads(device: torch.device):
        """On a CPU, the penalty's workers solve independent spectra in parallel and every other
        op (the policy's) runs on one thread: on cores shared with other work, intra-op threads
        stall each other (SmolLM2 policy passes: ~4.5 s an episode on 2 threads at a load of
        10; about a tenth of that on one)."""
        return single_threaded_torch() if device.type == "cpu" else nullcontext()

    def _scores(self, policy: RowPolicy, layers: Sequence[torch.Tensor], batch: range,
                device: torch.device) -> torch.Tensor:
        """Scores [B, m] of the rows of layers[batch] ([m, d] each): only layer_batch layers are
        ever copied to float32 (and kept for the backward pass) at a time."""
        # each layer moved on its own: under a device map the layers sit on several devices
        return policy(torch.stack([layers[i].detach().to(device) for i in batch]).float())

    def _all_scores(self, policy: RowPolicy, layers: Sequence[torch.Tensor],
                    device: torch.device) -> torch.Tensor:
        return torch.cat([self._scores(policy, layers, batch, device)
                          for batch in layer_batches(len(layers), self.layer_batch)])  # [L, m]

    def _rewards(self, ks: torch.Tensor) -> torch.Tensor:
        return -ks if self.reward == "neg_ks" else 1.0 / ks.clamp_min(1e-6)

    def train(self, layers: Sequence[torch.Tensor], k: int, ctx: PruneContext,
              penalty: RowSubsetKS | None = None) -> tuple[RowPolicy, dict[str, Any]]:
        """REINFORCE on the FFN1 matrices `layers` (L tensors [m, d], or a stack [L, m, d]).

        An episode: scores [L, m] without gradients; the greedy top-k [L, k] and S sampled keep
        sets [S, L, k] are judged in one batched KS call; then each layer's log-probability is
        recomputed with gradients and back-propagated a layer batch at a time (the loss is a sum
        over layers), so memory never holds more than layer_batch layers' activations.
        """
        layers = list(layers)
        device = torch.device(ctx.device)
        if penalty is None:
            penalty = self.penalty(layers, k, device)
        with self._threads(device):
            return self._reinforce(layers, k, ctx, penalty, device)

    def _reinforce(self, layers: list[torch.Tensor], k: int, ctx: PruneContext,
                   penalty: RowSubsetKS, device: torch.device
                   ) -> tuple[RowPolicy, dict[str, Any]]:
        torch.manual_seed(ctx.seed)
        gen = torch.Generator(device=device).manual_seed(ctx.seed)
        num_layers, samples = len(layers), self.samples
        policy = RowPolicy(layers[0].shape[-1], self.policy_dim).to(device)
        opt = torch.optim.AdamW(policy.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        layer_w = depth_weights(num_layers, self.depth_weight, self.gamma).to(device)
        ema = None
        best_state, best_ks, history = None, float("inf"), []
        bar = progress(range(self.episodes), desc="policy episodes")
        for _ in bar:
            with torch.no_grad():
                scores = self._all_scores(policy, layers, device)  # [L, m]
                order = gumbel_topk(scores.expand(samples, -1, -1), k, gen)  # [S, L, k]
                ks = penalty(torch.cat([scores.topk(k, dim=-1).indices[None], order]))
            greedy_ks = ks[0].mean().item()  # [1 + S, L]: row 0 is the greedy top-k
            history.append(greedy_ks)
            bar.set_postfix(ks=f"{greedy_ks:.4f}", best=f"{min(best_ks, greedy_ks):.4f}")
            if greedy_ks < best_ks:  # this state is the one that produced greedy_ks
                best_ks, best_state = greedy_ks, copy.deepcopy(policy.state_dict())
            returns = discounted_returns(self._rewards(ks[1:]), self.gamma)  # [S, L]
            if not self.baseline:
                advantage = returns
            elif samples > 1:  # leave-one-out mean of the other samples
                advantage = returns - (returns.sum(0) - returns) / (samples - 1)
            else:  # running mean per layer
                ema = returns[0] if ema is None else 0.9 * ema + 0.1 * returns[0]
                advantage = returns - ema
            opt.zero_grad()
            for batch in layer_batches(num_layers, self.layer_batch):
                # loss = -mean over [S, L] of w * A * log P, summed here a layer batch at a time
                i = slice(batch.start, batch.stop)
                scores = self._scores(policy, layers, batch, device)  # [B, m]
                log_prob = plackett_luce_log_prob(scores.expand(samples, -1, -1),
                                                  order[:, i])  # [S, B]
                loss = -(layer_w[i] * advantage[:, i] * log_prob).sum() / (samples * num_layers)
                loss.backward()
            opt.step()
        with torch.no_grad():  # the state after the last update competes too
            scores = self._all_scores(policy, layers, device)
            final_ks = penalty(scores.topk(k, dim=-1).indices[None]).mean().item()
        history.append(final_ks)
        if final_ks < best_ks:
            best_ks, best_state = final_ks, copy.deepcopy(policy.state_dict())
        policy.load_state_dict(best_state)
        return policy, {"ks_history": history, "ks_best_train": best_ks}

    # ---- the method interface -----------------------------------------------------------------
    def keep_indices(self, model: nn.Module, adapter: FFNAdapter, k: int, ctx: PruneContext):
        layers = [b.ffn1.detach() for b in adapter.blocks(model)]  # L views [m, d], no copies
        device = torch.device(ctx.device)
        started = time.perf_counter()
        penalty = self.penalty(layers, k, device)
        with self._threads(device):
            policy, report = reuse_or_train(ctx, RowPolicy, {"hidden_size": layers[0].shape[-1]},
                                            self.episodes,
                                            lambda: self.train(layers, k, ctx, penalty))
            if report["policy_source"] == "trained":  # the penalty's setup counts as training
                report["policy_train_seconds"] = time.perf_counter() - started
            scores = self._all_scores(policy, layers, device).detach()  # [L, m]
            if self.final_mask == "topk":
                keep = scores.topk(k, dim=-1).indices
            else:  # the reference code's random final draw
                gen = torch.Generator(device=device).manual_seed(ctx.seed)
                keep = gumbel_topk(scores, k, gen)
            ks = penalty(keep[None])[0]  # [L]
        report.update(policy_params=policy.num_parameters(), ks_per_layer=ks.tolist(),
                      ks_mean_dense_vs_pruned=ks.mean().item())
        return [idx.cpu() for idx in keep], report
