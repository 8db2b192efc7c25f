"""PruneNet as the authors' code runs it (LCS2-IIITD/PruneNet, `prunenet/prunenet.py`), written
anew in our style behind the common interface. This is the behaviour the paper's numbers come
from; `method=prunenet` (prunenet.py) is the paper's description, with a deterministic mask.

One FullMatrixPolicy (yopo.methods.prunenet.policy) serves every layer. An episode, as theirs:
1. for each layer i, keep probabilities p_i = policy(W_i) [m] under fresh uniform noise, and
   k rows drawn without replacement with torch.multinomial(p_i, k); reward
   r_i = 1 / KS(singular values of W_i, of W_i[keep]) (scipy.stats.ks_2samp; 99999 when the
   two samples agree exactly);
2. then one AdamW step per layer, in layer order, on loss_i = -sum(log p_i'[keep_i]) * 0.99^i
   r_i, where p_i' is recomputed by the (already partly updated) policy under fresh noise.
No sum over later layers, no baseline; the weights 0.99^i favour early layers.

Which policy prunes: theirs saves a checkpoint at the best total reward but prunes, on a first
run, with the policy after the last episode (`prune_with: last`, the default); `best` takes the
checkpoint, as their second run would. The final mask is one more multinomial draw, noise
included. A step whose gradients are not finite (a kept row's probability underflows to 0 under the new
noise, so log p = -inf) is skipped, as their fp16 GradScaler skips it; the run records how many.
Differences that do not change the algorithm: float32 instead of their fp16 autocast, a torch.Generator seeded with the run's seed instead of the global RNG,
FFN1 read through our adapters (the gate for LLaMA-style models, as theirs), `round_to` applied
to k, and the gradient clipping they call after zero_grad (a no-op) left out.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from ...adapters import FFNAdapter
from ...errors import ConfigError
from ...progress import progress
from ..base import NeuronSelectionMethod, PruneContext
from .policy import FullMatrixPolicy, reuse_or_train

PRUNE_WITH = ("last", "best")
IDENTICAL_SPECTRA_REWARD = 99999.0  # theirs, when KS = 0


def inverse_ks_reward(dense_svals: np.ndarray, kept: torch.Tensor) -> tuple[float, float]:
    """(reward, KS) of keeping the rows `kept` [k, d] of a layer whose full FFN1 matrix has
    singular values `dense_svals` [min(m, d)]: reward = 1 / ks_2samp(...).statistic."""
    kept_svals = torch.linalg.svdvals(kept.float()).cpu().numpy()
    ks = float(stats.ks_2samp(dense_svals, kept_svals).statistic)
    return (IDENTICAL_SPECTRA_REWARD if ks == 0 else 1.0 / ks), ks


def layer_discounts(num_layers: int, discount: float) -> list[float]:
    """The factor of layer i's reward in its loss: discount^i (theirs: 0.99^i)."""
    return [discount ** i for i in range(num_layers)]


class PruneNetReference(NeuronSelectionMethod):
    takes_policy = True
    training_options = ("episodes", "lr", "weight_decay", "discount", "prune_with")

    def __init__(self, name: str = "prunenet_reference", *, episodes: int = 20,
                 lr: float = 1e-3, weight_decay: float = 0.01, discount: float = 0.99,
                 prune_with: str = "last"):
        super().__init__(name)
        if episodes < 1:
            raise ConfigError(f"episodes={episodes} must be at least 1")
        if prune_with not in PRUNE_WITH:
            raise ConfigError(f"unknown prune_with '{prune_with}' (use one of {PRUNE_WITH})")
        self.episodes, self.lr, self.weight_decay = episodes, lr, weight_decay
        self.discount, self.prune_with = discount, prune_with

    @staticmethod
    def draw(policy: FullMatrixPolicy, ffn1: torch.Tensor, k: int,
             gen: torch.Generator) -> torch.Tensor:
        """k row indices of ffn1 [m, d], sorted, drawn as theirs: multinomial without
        replacement from the keep probabilities under fresh noise."""
        probs = policy(ffn1, gen)
        return torch.multinomial(probs, k, replacement=False, generator=gen).sort().values

    def train(self, layers: Sequence[torch.Tensor], k: int, ctx: PruneContext,
              gen: torch.Generator) -> tuple[FullMatrixPolicy, dict[str, Any]]:
        """REINFORCE as theirs on the FFN1 matrices `layers` (L tensors [m, d])."""
        device = torch.device(ctx.device)
        m, d = layers[0].shape
        with torch.random.fork_rng(devices=[]):  # the initial weights, from the run's seed
            torch.manual_seed(ctx.seed)
            policy = FullMatrixPolicy(d, m).to(device)
        opt = torch.optim.AdamW(policy.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        dense_svals = [torch.linalg.svdvals(w.float()).cpu().numpy() for w in layers]
        discounts = layer_discounts(len(layers), self.discount)
        history, best_total, best_episode, best_state = [], -float("inf"), -1, None
        skipped = 0  # steps with non-finite gradients, skipped as their GradScaler skips them
        bar = progress(range(self.episodes), desc="policy episodes (authors' algorithm)")
        for episode in bar:
            actions, rewards = [], []
            with torch.no_grad():
                for w, svals in zip(layers, dense_svals):
                    w = w.to(device).float()
                    keep = self.draw(policy, w, k, gen)
                    rewards.append(inverse_ks_reward(svals, w[keep])[0])
                    actions.append(keep)
            for w, keep, reward, factor in zip(layers, actions, rewards, discounts):
                probs = policy(w.to(device).float(), gen)  # [m], fresh noise as theirs
                loss = -torch.log(probs[keep]).sum() * (factor * reward)
                opt.zero_grad()
                loss.backward()
                if all(p.grad.isfinite().all() for p in policy.parameters()):
                    opt.step()
                else:  # a kept row's probability underflowed to 0 under the new noise
                    skipped += 1
            total = float(sum(rewards))
            history.append(total)
            bar.set_postfix(total_reward=f"{total:.2f}")
            if total > best_total:  # theirs saves the policy after this episode's updates
                best_total, best_episode = total, episode
                best_state = copy.deepcopy(policy.state_dict())
        if self.prune_with == "best":
            policy.load_state_dict(best_state)
        return policy, {"reward_history": history, "best_total_reward": best_total,
                        "best_episode": best_episode, "prune_with": self.prune_with,
                        "optimizer_steps": self.episodes * len(layers) - skipped,
                        "skipped_steps": skipped}

    def keep_indices(self, model: nn.Module, adapter: FFNAdapter, k: int, ctx: PruneContext):
        layers = [b.ffn1.detach() for b in adapter.blocks(model)]  # L views [m, d]
        m, d = layers[0].shape
        device = torch.device(ctx.device)
        gen = torch.Generator(device=device).manual_seed(ctx.seed)
        policy, report = reuse_or_train(ctx, FullMatrixPolicy, {"hidden_size": d, "ffn_width": m},
                                        self.episodes, lambda: self.train(layers, k, ctx, gen))
        keep, ks = [], []
        with torch.no_grad():
            for w in layers:
                w = w.to(device).float()
                idx = self.draw(policy, w, k, gen)  # the final mask: one more draw, noise included
                keep.append(idx.cpu())
                ks.append(inverse_ks_reward(torch.linalg.svdvals(w).cpu().numpy(), w[idx])[1])
        report.update(policy_params=policy.num_parameters(), ks_per_layer=ks,
                      ks_mean_dense_vs_pruned=float(np.mean(ks)))
        return keep, report
