"""The Gemma-3 adapter on a tiny random Gemma3 model: what it must know about the family (the
(1 + weight) norms, the post-FFN norm between a neuron and the stream, hidden_activation), and
every FFN-width method pruning it into a checkpoint that reloads."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import load_tiny, logits
from yopo.adapters import get_adapter
from yopo.adapters.gemma import GemmaAdapter
from yopo.errors import ConfigError
from yopo.methods.base import PruneContext, kept_width
from yopo.methods.expected_activation import ExpectedActivation
from yopo.methods.magnitude import MagnitudeNeurons, magnitude_scores
from yopo.methods.prunenet.method import PruneNet
from yopo.methods.prunenet.reference import PruneNetReference
from yopo.methods.random import RandomNeurons
from yopo.methods.slicegpt import SliceGPT
from yopo.models import count_parameters


def tiny_gemma():
    """The tiny model with random norm weights (they start at 0, where 1 + w and w differ most
    visibly only once they are not)."""
    model, tokenizer = load_tiny("tiny_gemma")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith("layernorm") or name.endswith(".norm"):
                module.weight.copy_(0.5 * torch.randn(module.weight.shape, generator=gen))
    return model.eval(), tokenizer


def test_the_adapter_reads_gemmas_norms_and_activation():
    model, _ = tiny_gemma()
    adapter = get_adapter(model)
    assert isinstance(adapter, GemmaAdapter) and adapter.activation_name(model) == "gelu_pytorch_tanh"
    layer = model.model.layers[1]
    block = adapter.blocks(model)[1]
    assert block.ffn_in == [layer.mlp.gate_proj, layer.mlp.up_proj]
    torch.testing.assert_close(block.norm_weight, 1 + layer.pre_feedforward_layernorm.weight)
    torch.testing.assert_close(block.out_scale, 1 + layer.post_feedforward_layernorm.weight)
    # what a neuron writes: the post-FFN norm's scale times its down column
    expected = ((1 + layer.post_feedforward_layernorm.weight.double())[:, None]
                * layer.mlp.down_proj.weight.double())
    torch.testing.assert_close(block.output_columns(), expected.detach())


def test_magnitude_scores_weigh_the_output_through_the_post_ffn_norm():
    model, _ = tiny_gemma()
    mlp, post = model.model.layers[0].mlp, model.model.layers[0].post_feedforward_layernorm
    written = (1 + post.weight.double())[:, None] * mlp.down_proj.weight.double()  # [d, m]
    expected = (mlp.gate_proj.weight.double().pow(2).sum(1) + mlp.up_proj.weight.double().pow(2)
                .sum(1) + written.pow(2).sum(0)).sqrt()
    torch.testing.assert_close(magnitude_scores(model, get_adapter(model))[0], expected.detach())


def test_slicing_equals_zeroing_the_dropped_neurons_and_keeping_all_changes_nothing(
        token_batch):
    model, _ = tiny_gemma()
    adapter = get_adapter(model)
    dense = logits(model, token_batch)
    adapter.slice_ffn(model, [torch.arange(160)] * 3)
    torch.testing.assert_close(logits(model, token_batch), dense, rtol=1e-5, atol=1e-5)
    keep = torch.arange(0, 160, 2)
    zeroed, _ = tiny_gemma()
    with torch.no_grad():
        for layer in zeroed.model.layers:
            dropped = torch.ones(160, dtype=torch.bool)
            dropped[keep] = False
            layer.mlp.down_proj.weight[:, dropped] = 0
    adapter.slice_ffn(model, [keep] * 3)
    torch.testing.assert_close(logits(model, token_batch), logits(zeroed, token_batch),
                               rtol=1e-5, atol=1e-5)
    assert model.config.intermediate_size == 80


@pytest.mark.parametrize("method", [RandomNeurons(), MagnitudeNeurons(),
                                    ExpectedActivation(allocation="uniform"),
                                    PruneNet(episodes=2, samples_per_episode=2),
                                    PruneNetReference(episodes=1)],
                         ids=["random", "magnitude", "expected_activation_uniform", "prunenet",
                              "prunenet_reference"])
def test_every_ffn_method_prunes_gemma_into_a_checkpoint_that_reloads(method, token_batch,
                                                                      tmp_path):
    model, tokenizer = tiny_gemma()
    adapter = get_adapter(model)
    dense = count_parameters(model)
    method.prune(model, adapter, PruneContext(ratio=0.3))
    k = kept_width(160, 0.3)
    assert adapter.ffn_width(model) == k
    # each layer loses (160 - k) rows of gate and up and columns of down, of width 64
    assert dense - count_parameters(model) == 3 * (160 - k) * 3 * 64
    model.save_pretrained(tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    torch.testing.assert_close(logits(reloaded, token_batch), logits(model, token_batch),
                               rtol=1e-5, atol=1e-5)


def test_slicegpt_refuses_gemma_in_one_clear_error():
    model, _ = tiny_gemma()
    with pytest.raises(ConfigError, match="normalises each branch's output"):
        SliceGPT(calibration_source="local").prune(model, get_adapter(model),
                                                   PruneContext(ratio=0.2))


def test_activation_and_per_layer_widths_on_gemma(token_batch, tmp_path):
    from yopo.config import compose
    from yopo.methods.activation import ActivationNeurons
    from yopo.pipeline import save_checkpoint

    model, tokenizer = tiny_gemma()
    adapter = get_adapter(model)
    ctx = PruneContext(ratio=0.3, tokenizer=tokenizer, data_dir=compose([]).data.dir,
                       calibration_tokens=4096)
    ActivationNeurons(calibration_tokens=1024, calibration_seq_len=128).prune(model, adapter, ctx)
    assert adapter.ffn_width(model) == kept_width(160, 0.3)

    model, tokenizer = tiny_gemma()  # the default allocation: first and last layer dense
    method = ExpectedActivation()
    report = method.prune(model, get_adapter(model), PruneContext(ratio=0.3))
    assert report["ffn_widths_kept"][0] == report["ffn_widths_kept"][-1] == 160
    save_checkpoint(method.checkpoint_model(model), tokenizer, tmp_path / "sliced")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "sliced",
                                                    trust_remote_code=True).eval()
    torch.testing.assert_close(logits(reloaded, token_batch), logits(model, token_batch),
                               rtol=1e-5, atol=1e-5)


def test_a_gguf_split_over_packages_is_joined_in_order_and_checked(tmp_path, monkeypatch):
    import hashlib

    from yopo.models import ModelUnavailableError, find_packaged_gguf

    parts = [b"GGUF-first-", b"second-", b"third"]
    for i, data in enumerate(parts):
        folder = tmp_path / "site" / f"fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"m.gguf.part{i:02d}").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cfg = {"gguf_file": "m.gguf", "setup": "make setup-fake",
           "chunks": [{"package": f"fake_part{i}", "file": f"m.gguf.part{i:02d}"}
                      for i in range(3)],
           "sha256": hashlib.sha256(b"".join(parts)).hexdigest()}
    joined = find_packaged_gguf(cfg, tmp_path / "cache")
    assert joined.read_bytes() == b"".join(parts)
    (tmp_path / "cache" / "m.gguf").unlink()
    with pytest.raises(ModelUnavailableError, match="sha256 .*make setup-fake"):
        find_packaged_gguf({**cfg, "sha256": "0" * 64}, tmp_path / "cache")
    with pytest.raises(ModelUnavailableError, match="'fake_missing' .* not installed.*setup-fake"):
        find_packaged_gguf({**cfg, "chunks": [{"package": "fake_missing", "file": "x"}]},
                           tmp_path / "other")
