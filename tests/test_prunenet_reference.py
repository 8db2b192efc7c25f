"""method=prunenet_reference: the authors' algorithm, checked by its defining properties
against independent computations (numpy SVD, scipy's KS test, counted optimiser calls)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import load_tiny
from yopo.adapters import get_adapter
from yopo.errors import ConfigError
from yopo.methods.base import PruneContext
from yopo.methods.prunenet.reference import (IDENTICAL_SPECTRA_REWARD, PruneNetReference,
                                             inverse_ks_reward, layer_discounts)
from yopo.methods.prunenet.policy import FullMatrixPolicy, PolicyError, RowPolicy, load_policy, save_policy


def tiny_llama():
    model, _ = load_tiny("tiny_llama")
    return model, get_adapter(model)  # 3 layers, d = 64, m = 160


def test_policy_has_d_times_m_plus_m_plus_m_parameters():
    assert FullMatrixPolicy(64, 160).num_parameters() == 64 * 160 + 160 + 160
    model, adapter = tiny_llama()
    _, report = PruneNetReference(episodes=1).keep_indices(model, adapter, 100,
                                                           PruneContext(ratio=0.375))
    assert report["policy_params"] == 64 * 160 + 160 + 160


def test_keep_probabilities_follow_the_noisy_sigmoid():
    policy = FullMatrixPolicy(8, 12)
    w = torch.randn(12, 8, generator=torch.Generator().manual_seed(0))
    probs = policy(w, torch.Generator().manual_seed(3))
    u = torch.rand(12, generator=torch.Generator().manual_seed(3))
    logits = (w @ policy.proj.weight.T + policy.proj.bias) @ policy.row_weights  # [12, 1]
    alpha = 1 / (1 + torch.exp(-logits[:, 0]))
    expected = 1 / (1 + torch.exp(-(torch.log(u / (1 - u)) + torch.log(alpha / (1 - alpha)))))
    torch.testing.assert_close(probs, expected.detach(), rtol=1e-5, atol=1e-6)
    again = policy(w, torch.Generator().manual_seed(4))
    assert not torch.allclose(probs, again)  # fresh noise at every call


def test_reward_is_one_over_scipy_ks_of_singular_values():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 16)).astype(np.float32)
    keep = np.sort(rng.choice(40, 25, replace=False))
    dense = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    kept = np.linalg.svd(w[keep].astype(np.float64), compute_uv=False)
    ks = stats.ks_2samp(dense, kept).statistic
    reward, measured_ks = inverse_ks_reward(dense, torch.from_numpy(w[keep]))
    assert measured_ks == pytest.approx(ks) and reward == pytest.approx(1 / ks)
    # all rows, spectra computed alike: KS = 0, and theirs returns 99999 instead of 1/0
    same, zero = inverse_ks_reward(torch.linalg.svdvals(torch.from_numpy(w)).numpy(),
                                   torch.from_numpy(w))
    assert zero == 0 and same == IDENTICAL_SPECTRA_REWARD


def test_layer_rewards_are_weighted_0_99_to_the_layer_index():
    assert layer_discounts(4, 0.99) == pytest.approx([1.0, 0.99, 0.9801, 0.970299])
    assert PruneNetReference().discount == 0.99


def test_one_optimiser_step_per_layer_per_episode_and_each_moves_the_policy(monkeypatch):
    # 4 episodes x 3 layers = 12 losses, counted by hand. Every step is counted and checked to
    # change the policy's weights, so a run that skipped its steps (or stepped without effect)
    # fails here instead of agreeing with its own skip count.
    calls = {"zero_grad": 0, "moved": []}
    step, zero_grad = torch.optim.AdamW.step, torch.optim.AdamW.zero_grad

    def counted_step(self, *args, **kwargs):
        params = [p for group in self.param_groups for p in group["params"]]
        before = [p.detach().clone() for p in params]
        out = step(self, *args, **kwargs)
        calls["moved"].append(any(not torch.equal(b, p) for b, p in zip(before, params)))
        return out

    def counted_zero_grad(self, *args, **kwargs):
        calls["zero_grad"] += 1
        return zero_grad(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted_step)
    monkeypatch.setattr(torch.optim.AdamW, "zero_grad", counted_zero_grad)
    model, adapter = tiny_llama()
    _, report = PruneNetReference(episodes=4).keep_indices(model, adapter, 100,
                                                           PruneContext(ratio=0.375))
    assert calls["zero_grad"] == 4 * 3  # one loss per layer per episode
    # float32 keep probabilities of this model never underflow, so no step may be skipped
    assert calls["moved"] == [True] * (4 * 3)
    assert report["optimizer_steps"] == 4 * 3 and report["skipped_steps"] == 0
    assert len(report["reward_history"]) == 4


def test_a_step_with_non_finite_gradients_is_skipped_and_counted(monkeypatch):
    # The 2nd and 5th of the 12 losses see keep probabilities of 0 (log 0 = -inf, as when a kept
    # row underflows under new noise): exactly those two steps are skipped, the other 10 taken.
    forward, step = FullMatrixPolicy.forward, torch.optim.AdamW.step
    calls = {"losses": 0, "steps": 0}

    def rigged_forward(self, *args, **kwargs):
        probs = forward(self, *args, **kwargs)
        if not torch.is_grad_enabled():  # the draws; only the losses see gradients
            return probs
        calls["losses"] += 1
        return probs * 0 if calls["losses"] in (2, 5) else probs

    def counted_step(self, *args, **kwargs):
        calls["steps"] += 1
        return step(self, *args, **kwargs)

    monkeypatch.setattr(FullMatrixPolicy, "forward", rigged_forward)
    monkeypatch.setattr(torch.optim.AdamW, "step", counted_step)
    model, adapter = tiny_llama()
    _, report = PruneNetReference(episodes=4).keep_indices(model, adapter, 100,
                                                           PruneContext(ratio=0.375))
    assert calls == {"losses": 12, "steps": 10}
    assert report["skipped_steps"] == 2 and report["optimizer_steps"] == 10


def test_same_seed_same_mask_and_another_seed_another_mask():
    model, adapter = tiny_llama()

    def mask(seed):
        keep, _ = PruneNetReference(episodes=2).keep_indices(model, adapter, 100,
                                                              PruneContext(0.375, seed=seed))
        return torch.stack(keep)

    first = mask(0)
    assert torch.equal(first, mask(0))
    assert not torch.equal(first, mask(1))
    assert all(row.unique().numel() == 100 and row.max() < 160 for row in first)


def test_policy_transfers_across_ratios_but_only_to_the_same_d_and_m(tmp_path):
    model, adapter = tiny_llama()
    PruneNetReference(episodes=1).keep_indices(
        model, adapter, 80, PruneContext(ratio=0.5, run_dir=tmp_path, model_name="t"))
    report = PruneNetReference().prune(model, adapter, PruneContext(ratio=0.2, policy=tmp_path))
    assert report["policy_train_ratio"] == 0.5 and report["policy_train_seconds"] == 0.0
    assert adapter.ffn_width(model) == math.floor(0.8 * 160)

    save_policy(FullMatrixPolicy(64, 100), tmp_path / "narrow", {"model": "other"})
    with pytest.raises(PolicyError, match="ffn width 100.*ffn width 160"):
        load_policy(tmp_path / "narrow", FullMatrixPolicy, hidden_size=64, ffn_width=160)
    save_policy(RowPolicy(64, 8), tmp_path / "rows", {"model": "t"})
    with pytest.raises(PolicyError, match="'row_mlp' policy, not the 'full_matrix'"):
        load_policy(tmp_path / "rows", FullMatrixPolicy, hidden_size=64, ffn_width=160)


def test_prune_with_best_prunes_with_the_policy_after_the_best_episode():
    # The best policy is rebuilt without prune_with=best: the default (`last`) run stopped after
    # the best episode. The mask must be that policy's draw, and differ from the last policy's.
    model, adapter = tiny_llama()
    layers = [b.ffn1.detach() for b in adapter.blocks(model)]
    ctx = PruneContext(ratio=0.375)  # seed 0: rewards 11.09, 11.53, 11.53, 11.53

    def trained(episodes):  # (policy after `episodes` episodes, its history, the generator)
        gen = torch.Generator().manual_seed(ctx.seed)
        policy, info = PruneNetReference(episodes=episodes).train(layers, 100, ctx, gen)
        return policy, info["reward_history"], gen

    last, history, gen = trained(4)
    best = history.index(max(history))  # the first episode to reach the highest total reward
    assert best < 3  # so the best policy is not the last one
    best_policy, prefix, _ = trained(best + 1)  # training is deterministic: the same episodes
    assert prefix == history[: best + 1]
    keep, report = PruneNetReference(episodes=4, prune_with="best").keep_indices(
        model, adapter, 100, ctx)
    assert report["best_episode"] == best and report["best_total_reward"] == max(history)

    def final_masks(policy):  # the final draw follows training on the same generator
        draw_gen = torch.Generator().set_state(gen.get_state())
        with torch.no_grad():
            return torch.stack([PruneNetReference.draw(policy, w.float(), 100, draw_gen)
                                for w in layers])

    assert torch.equal(torch.stack(keep), final_masks(best_policy)), "not the best policy's mask"
    assert not torch.equal(torch.stack(keep), final_masks(last))  # the two policies' masks differ


@pytest.mark.parametrize("bad", [dict(episodes=0), dict(prune_with="first")])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        PruneNetReference(**bad)
