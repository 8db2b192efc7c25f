"""PruneNet's pieces and its learning behaviour."""
import itertools
import json
import math

import pytest
import torch
from safetensors.torch import save_file

from yopo.errors import ConfigError
from yopo.methods.base import PruneContext
from yopo.methods.prunenet.method import (PruneNet, depth_weights, discounted_returns, gumbel_topk,
                                   plackett_luce_log_prob)
from yopo.methods.prunenet.policy import (METADATA_KEY, POLICY_WEIGHTS, PolicyError, RowPolicy, load_policy,
                         read_policy_metadata, save_policy)


def test_plackett_luce_probabilities_sum_to_one():
    scores = torch.tensor([0.3, -1.0, 2.0, 0.5])
    orders = torch.tensor(list(itertools.permutations(range(4), 2)))  # every ordered draw of 2
    probs = plackett_luce_log_prob(scores.expand(len(orders), 4), orders).exp()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-6)
    # first draw 2 then 0: softmax over all, then over the rest
    p = torch.softmax(scores, 0)
    expected = p[2] * p[0] / (1 - p[2])
    assert probs[orders.tolist().index([2, 0])].item() == pytest.approx(expected.item(), rel=1e-6)


def test_gumbel_topk_samples_follow_plackett_luce():
    scores = torch.tensor([1.0, 0.0, -1.0])
    draws = gumbel_topk(scores.expand(20000, 3), 1, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws[:, 0], minlength=3).float() / 20000
    torch.testing.assert_close(freq, torch.softmax(scores, 0), atol=0.015, rtol=0)


def test_discounted_returns():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    g = 0.5
    expected = [1 + g * 2 + g * g * 3, 2 + g * 3, 3.0]
    torch.testing.assert_close(discounted_returns(r, g)[0], torch.tensor(expected))


def test_depth_weights_favour_later_layers_and_reference_favours_early():
    linear = depth_weights(6, "linear", 0.9)
    assert torch.all(linear[1:] > linear[:-1]) and linear.mean().item() == pytest.approx(1.0)
    reference = depth_weights(6, "gamma_power", 0.9)
    assert torch.all(reference[1:] < reference[:-1])


def _synthetic_blocks(layers=4, rows=64, cols=16, seed=0):
    """Layers whose rows are half strong, half near-zero: keeping the strong half preserves the
    spectrum, keeping weak rows shrinks it. A policy that learns anything learns this."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(layers, rows, cols, generator=gen)
    scale = torch.ones(rows)
    scale[torch.randperm(rows, generator=gen)[: rows // 2]] = 0.02
    return w * scale[None, :, None]


def test_training_lowers_ks_on_a_learnable_problem():
    weights = _synthetic_blocks()
    method = PruneNet(episodes=40, samples_per_episode=4, lr=1e-2, policy_dim=16)
    policy, info = method.train(weights, k=32, ctx=PruneContext(ratio=0.5, seed=0))
    history = info["ks_history"]
    assert info["ks_best_train"] == min(history)
    assert min(history) < 0.5 * history[0], history  # learned, not just kept the start


def test_same_seed_same_mask_and_topk_is_deterministic(tiny):
    _, model, _, adapter = tiny
    masks = []
    for _ in range(2):
        method = PruneNet(episodes=3, samples_per_episode=2)
        keep, _ = method.keep_indices(model, adapter, 100, PruneContext(ratio=0.375, seed=7))
        masks.append(torch.stack(keep))
    assert torch.equal(masks[0], masks[1])
    other, _ = PruneNet(episodes=3, samples_per_episode=2).keep_indices(
        model, adapter, 100, PruneContext(ratio=0.375, seed=8))
    assert not torch.equal(masks[0], torch.stack(other))


def test_sampled_final_mask_differs_from_topk(tiny):
    _, model, _, adapter = tiny
    common = dict(episodes=2, samples_per_episode=1, reward="inv_ks", depth_weight="gamma_power",
                  baseline=False)
    ctx = PruneContext(ratio=0.5, seed=0)
    drawn, _ = PruneNet(final_mask="sample", **common).keep_indices(model, adapter, 80, ctx)
    topk, _ = PruneNet(final_mask="topk", **common).keep_indices(model, adapter, 80, ctx)
    assert any(set(a.tolist()) != set(b.tolist()) for a, b in zip(drawn, topk))


def test_policy_trained_at_one_ratio_prunes_at_another(tiny, tmp_path):
    _, model, _, adapter = tiny
    width = adapter.ffn_width(model)
    PruneNet(episodes=2).keep_indices(model, adapter, width // 2,
                                      PruneContext(ratio=0.5, run_dir=tmp_path, model_name="t"))
    meta = read_policy_metadata(tmp_path)
    assert meta["train_ratio"] == 0.5 and meta["hidden_size"] == model.config.hidden_size
    report = PruneNet().prune(model, adapter, PruneContext(ratio=0.2, policy=tmp_path))
    assert report["policy_source"] == str(tmp_path) and report["policy_train_ratio"] == 0.5
    assert report["ffn_width_pruned"] == math.floor(0.8 * width)
    assert adapter.ffn_width(model) == math.floor(0.8 * width)


def test_policy_for_another_hidden_size_is_rejected(tmp_path):
    save_policy(RowPolicy(32, 8), tmp_path, {"model": "other"})
    with pytest.raises(PolicyError, match="hidden size 32.*hidden size 64"):
        load_policy(tmp_path, RowPolicy, hidden_size=64)


def test_corrupt_or_missing_policy_is_rejected(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path, RowPolicy, hidden_size=64)
    save_policy(RowPolicy(64, 8), tmp_path, {"model": "m"})
    (tmp_path / "policy.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(PolicyError, match="corrupt"):
        load_policy(tmp_path, RowPolicy, hidden_size=64)


def test_policy_metadata_without_a_shape_key_is_rejected_in_one_line(tmp_path):
    policy = RowPolicy(64, 8)
    state = {k: v.contiguous() for k, v in policy.state_dict().items()}
    meta = {"kind": "row_mlp", "hidden_size": 64}  # no policy_dim
    save_file(state, str(tmp_path / POLICY_WEIGHTS), metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(PolicyError, match="lacks policy_dim"):
        load_policy(tmp_path, RowPolicy, hidden_size=64)


def test_saving_a_policy_writes_one_file_atomically(tmp_path, monkeypatch):
    save_policy(RowPolicy(64, 8), tmp_path, {"model": "m", "train_ratio": 0.3})
    assert sorted(p.name for p in tmp_path.iterdir()) == [POLICY_WEIGHTS]
    assert read_policy_metadata(tmp_path)["train_ratio"] == 0.3

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("yopo.methods.prunenet.policy.save_file", crash)
    with pytest.raises(OSError):
        save_policy(RowPolicy(64, 8), tmp_path / "new", {"model": "m"})
    assert list((tmp_path / "new").iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("bad", [dict(reward="ks"), dict(depth_weight="deep"),
                                 dict(final_mask="all"), dict(episodes=0)])
def test_bad_method_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        PruneNet(**bad)
