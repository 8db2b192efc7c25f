"""Invariants of FFN slicing on every adapter's tiny random model."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import logits
from yopo.errors import ConfigError
from yopo.methods.base import check_ratio, kept_width
from yopo.models import count_parameters


def _removed_per_neuron(name: str, hidden: int) -> int:
    """Parameters one FFN neuron owns, from the architecture (not from the model object):
    LLaMA-style: a gate row, an up row, a down column; Phi/OPT: an fc1 row + bias, an fc2 column."""
    return 3 * hidden if name == "tiny_llama" else 2 * hidden + 1


def test_keep_all_leaves_logits_unchanged(tiny, token_batch):
    name, model, _, adapter = tiny
    before = logits(model, token_batch)
    width = adapter.ffn_width(model)
    adapter.slice_ffn(model, [torch.arange(width)] * len(adapter.decoder_layers(model)))
    torch.testing.assert_close(logits(model, token_batch), before, rtol=0, atol=0)


def test_slicing_equals_zeroing_dropped_neurons(tiny, token_batch, clone):
    name, model, _, adapter = tiny
    width, layers = adapter.ffn_width(model), len(adapter.decoder_layers(model))
    gen = torch.Generator().manual_seed(1)
    keep = [torch.randperm(width, generator=gen)[: width * 2 // 3] for _ in range(layers)]
    zeroed = clone(model)
    for block, idx in zip(adapter.blocks(zeroed), keep):
        dropped = torch.ones(width, dtype=torch.bool)
        dropped[idx] = False
        with torch.no_grad():  # a dropped neuron's output column is zero: it contributes nothing
            block.ffn_out.weight[:, dropped] = 0.0
    adapter.slice_ffn(model, keep)
    torch.testing.assert_close(logits(model, token_batch), logits(zeroed, token_batch),
                               rtol=1e-5, atol=1e-5)


def test_parameter_count_and_config_follow_the_formula(tiny):
    name, model, _, adapter = tiny
    width, layers = adapter.ffn_width(model), len(adapter.decoder_layers(model))
    hidden = model.config.hidden_size
    dense = count_parameters(model)
    k = kept_width(width, 0.3)
    adapter.slice_ffn(model, [torch.arange(k)] * layers)
    assert count_parameters(model) == dense - layers * (width - k) * _removed_per_neuron(name, hidden)
    assert getattr(model.config, adapter.width_key) == k


def test_save_and_reload_with_plain_transformers(tiny, token_batch, tmp_path):
    name, model, tokenizer, adapter = tiny
    width, layers = adapter.ffn_width(model), len(adapter.decoder_layers(model))
    adapter.slice_ffn(model, [torch.arange(0, width, 2)] * layers)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits(reloaded, token_batch), logits(model, token_batch))


def test_per_layer_widths_are_rejected(tiny):
    _, model, _, adapter = tiny
    layers = len(adapter.decoder_layers(model))
    keep = [torch.arange(10 + i) for i in range(layers)]
    with pytest.raises(ValueError, match="same number of neurons"):
        adapter.slice_ffn(model, keep)


@pytest.mark.parametrize("ratio,width,round_to,expected", [
    (0.0, 1536, 1, 1536), (0.3, 1536, 1, 1075), (0.3, 1000, 1, 700), (0.3, 11008, 1, 7705),
    (0.3, 1536, 64, 1024), (0.3, 11008, 128, 7680), (0.99, 100, 8, 8)])
def test_kept_width(ratio, width, round_to, expected):
    assert kept_width(width, ratio, round_to) == expected


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_ratio_out_of_range_is_rejected(bad):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        check_ratio(bad)
