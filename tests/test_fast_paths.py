"""The fast PruneNet penalty (Gram of kept rows as G_full - G_dropped, parallel eigen-solves,
layer batches) gives what the straightforward computation gives: same KS, same masks."""
import pytest
import torch

from yopo.errors import ConfigError
from yopo.methods.base import PruneContext
from yopo.methods.prunenet.method import PruneNet
from yopo.methods.prunenet.spectrum import RowSubsetKS, ks_statistic, symmetric_eigenvalues


def _layers(num=5, rows=96, cols=24, seed=0):
    """FFN1-like matrices [rows, cols] with log-normal row scales (norms spread ~e^2)."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(0.7 * torch.randn(num, rows, 1, generator=gen))
    return scale * torch.randn(num, rows, cols, generator=gen)


def _random_keep(subsets, num, rows, k, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(subsets, num, rows, generator=gen).argsort(-1)[..., :k]  # [E, L, k]


def _straightforward_ks(layers, keep):
    """Gather the kept rows, SVD them in float64, KS against the dense SVD: [E, L]."""
    w = layers.double()
    rows = torch.stack([w[i][keep[:, i]] for i in range(len(w))], dim=1)  # [E, L, k, d]
    dense = torch.linalg.svdvals(w).expand(keep.shape[0], -1, -1)
    return ks_statistic(dense, torch.linalg.svdvals(rows))


def test_parallel_eigenvalues_equal_eigvalsh_and_restore_threads():
    a = torch.randn(7, 30, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sym = a + a.mT
    threads = torch.get_num_threads()
    ours = symmetric_eigenvalues(sym, workers=3)
    assert torch.get_num_threads() == threads
    expected = torch.stack([torch.linalg.eigvalsh(m) for m in sym])
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,dropped_path", [(70, True), (40, False), (12, False)])
def test_fast_ks_equals_the_straightforward_svd(k, dropped_path):
    # k=70 of 96: fewer dropped than kept rows, G_full - G_dropped; k=40: Gram of the kept
    # rows; k=12 < d=24: the kept rows' [k, k] Gram (only k singular values)
    layers = _layers()
    keep = _random_keep(6, len(layers), layers.shape[1], k)
    expected = _straightforward_ks(layers, keep)
    fast = RowSubsetKS(list(layers), k, "gram", layer_batch=2, workers=2)
    assert fast.subtract_dropped is dropped_path
    torch.testing.assert_close(fast(keep), expected, rtol=0, atol=1e-12)
    reference = RowSubsetKS(list(layers), k, "svd", layer_batch=5)  # float32 SVD
    torch.testing.assert_close(reference(keep), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast.dense, torch.linalg.svdvals(layers.double()),
                               rtol=1e-10, atol=1e-10)


def test_penalty_reads_low_precision_weights_without_changing_them():
    layers = _layers(num=3).bfloat16()
    before = layers.clone()
    keep = _random_keep(2, 3, layers.shape[1], 70)
    ks = RowSubsetKS(list(layers), 70, "gram", layer_batch=1)(keep)
    torch.testing.assert_close(ks, _straightforward_ks(layers, keep), rtol=0, atol=1e-12)
    assert torch.equal(layers, before)


def test_fast_and_straightforward_training_select_the_same_rows_on_synthetic_layers():
    layers = _layers(num=6)
    ctx = PruneContext(ratio=0.3, seed=3)
    runs = {}
    for spectrum, layer_batch in (("svd", 6), ("gram", 1), ("gram", 4)):
        method = PruneNet(episodes=6, samples_per_episode=3, lr=1e-2, policy_dim=8,
                          spectrum=spectrum, layer_batch=layer_batch)
        policy, info = method.train(layers, 67, ctx)
        with torch.no_grad():
            keep = policy(layers).topk(67, dim=-1).indices
        runs[spectrum, layer_batch] = keep, info["ks_history"]
    (ref_keep, ref_hist), *others = runs.values()
    for keep, hist in others:
        assert torch.equal(keep, ref_keep)
        assert hist == pytest.approx(ref_hist, abs=1e-12)


def test_fast_and_straightforward_paths_give_the_same_mask_on_tiny_models(tiny):
    _, model, _, adapter = tiny
    width = adapter.ffn_width(model)
    k = width * 7 // 10
    results = []
    for spectrum, layer_batch in (("svd", 8), ("gram", 1)):
        method = PruneNet(episodes=3, samples_per_episode=2, spectrum=spectrum,
                          layer_batch=layer_batch)
        keep, report = method.keep_indices(model, adapter, k, PruneContext(ratio=0.3, seed=5))
        results.append((torch.stack(keep), report))
    (keep_a, rep_a), (keep_b, rep_b) = results
    assert torch.equal(keep_a, keep_b)
    assert rep_b["ks_per_layer"] == pytest.approx(rep_a["ks_per_layer"], abs=1e-12)
    assert rep_b["ks_history"] == pytest.approx(rep_a["ks_history"], abs=1e-12)


@pytest.mark.parametrize("bad", [dict(layer_batch=0), dict(spectrum_workers=0),
                                 dict(spectrum="qr")])
def test_bad_speed_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        PruneNet(**bad)


# ---- fused gate/up projections ----------------------------------------------------------------
def _pruned_tiny_llama(round_to=1):
    from conftest import load_tiny
    from yopo.adapters import get_adapter

    model, _ = load_tiny("tiny_llama")
    adapter = get_adapter(model)
    width, layers = adapter.ffn_width(model), len(adapter.decoder_layers(model))
    gen = torch.Generator().manual_seed(0)
    adapter.slice_ffn(model, [torch.randperm(width, generator=gen)[:width * 7 // 10]
                              for _ in range(layers)])
    return model.eval(), adapter


def test_fused_gate_up_gives_the_same_logits_and_saves_a_standard_checkpoint(
        token_batch, tmp_path):
    from transformers import AutoModelForCausalLM

    from conftest import logits
    from yopo.modeling.fused_mlp import FusedGateUpMLP, fuse_gate_up, unfuse_gate_up

    model, adapter = _pruned_tiny_llama()
    before = logits(model, token_batch)
    assert fuse_gate_up(model) == len(adapter.decoder_layers(model))
    mlp = model.model.layers[0].mlp
    assert isinstance(mlp, FusedGateUpMLP) and mlp.gate_up_weight.is_contiguous()
    torch.testing.assert_close(logits(model, token_batch), before, rtol=1e-6, atol=1e-6)
    model.save_pretrained(tmp_path / "fused")  # saved under the unfused names
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fused").eval()
    torch.testing.assert_close(logits(reloaded, token_batch), before, rtol=1e-6, atol=1e-6)
    model.load_state_dict(reloaded.state_dict())  # a fused model loads standard state dicts

    assert unfuse_gate_up(model) == len(adapter.decoder_layers(model))
    assert type(model.model.layers[0].mlp) is type(reloaded.model.layers[0].mlp)
    torch.testing.assert_close(logits(model, token_batch), before, rtol=1e-6, atol=1e-6)
    model.save_pretrained(tmp_path / "unfused")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "unfused").eval()
    torch.testing.assert_close(logits(again, token_batch), before, rtol=1e-6, atol=1e-6)
    adapter.slice_ffn(model, [torch.arange(32)] * len(adapter.decoder_layers(model)))  # usable


def test_fusing_a_model_without_gated_mlps_is_a_config_error():
    from conftest import load_tiny
    from yopo.modeling.fused_mlp import fuse_gate_up

    model, _ = load_tiny("tiny_phi")
    with pytest.raises(ConfigError, match="gated MLP"):
        fuse_gate_up(model)


def test_fused_inference_is_on_by_default_and_changes_no_score(tmp_path):
    from yopo.config import compose
    from yopo.pipeline import run

    overrides = ["model=tiny_llama", "method.episodes=1", "eval=none", "logger=none",
                 f"paths.runs_dir={tmp_path}", "eval.perplexity={seqlen:64,max_chunks:2,batch_size:1}",
                 "eval.throughput={batch_sizes:[1],prompt_tokens:8,decode_tokens:2,warmup:0,repeats:1}"]
    assert compose(overrides).inference.fuse_gate_up == "auto"
    fused = run(compose(overrides), tmp_path / "fused")
    plain = run(compose(overrides + ["inference.fuse_gate_up=false"]), tmp_path / "plain")
    assert fused["inference"]["fused_mlps"] == 2 * 3  # pruned and dense copy, 3 layers each
    assert plain["inference"]["fused_mlps"] == 0
    assert fused["ppl_wikitext2"] == pytest.approx(plain["ppl_wikitext2"], rel=1e-6)
    assert fused["throughput"]["ideal_speedup"] == plain["throughput"]["ideal_speedup"]
    # the saved checkpoint is the standard, unfused one
    from transformers import AutoModelForCausalLM
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fused" / "pruned_model")
    assert hasattr(reloaded.model.layers[0].mlp, "gate_proj")


def test_fuse_option_auto_skips_ungated_models_and_true_requires_them(token_batch):
    from conftest import load_tiny, logits
    from yopo.modeling.fused_mlp import apply_fuse_option

    phi, _ = load_tiny("tiny_phi")
    assert apply_fuse_option("auto", [phi, None]) == 0
    with pytest.raises(ConfigError, match="gated MLP"):
        apply_fuse_option(True, [phi])
    with pytest.raises(ConfigError, match="not one of auto, true, false"):
        apply_fuse_option("yes", [phi])
    llama, _ = load_tiny("tiny_llama")
    before = logits(llama, token_batch)
    assert apply_fuse_option("auto", [llama]) == 3
    torch.testing.assert_close(logits(llama, token_batch), before, rtol=1e-6, atol=1e-6)
