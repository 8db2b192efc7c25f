"""Recovery fine-tuning (yopo.rft) on every family's tiny random model and the real WikiText-2
text (byte tokenizer): it trains, merges into a plain checkpoint, and rft=none touches nothing."""
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import TINY_MODELS, logits
from yopo import rft
from yopo.adapters import get_adapter
from yopo.config import CONF_DIR, compose
from yopo.data import DataError
from yopo.errors import ConfigError
from yopo.methods.base import PruneContext
from yopo.models import load_model

# A small text repeated over many steps: training on it must lower the loss.
SMALL_TEXT = ["data.calibration_tokens=256", "rft.seqlen=32", "rft.samples=8",
              "rft.batch_size=4", "rft.dropout=0.0", "rft.lr=5e-2", "rft.warmup_steps=0"]


def setup(model: str, rft_name: str = "lora", overrides=()):
    """(model, tokenizer, rft config, PruneContext) as a run with these overrides builds them."""
    cfg = compose([f"model={model}", f"rft={rft_name}", *overrides])
    net, tokenizer = load_model(cfg.model, cfg.paths.cache_dir)
    ctx = PruneContext(ratio=0.0, seed=int(cfg.seed), tokenizer=tokenizer,
                       data_dir=Path(cfg.data.dir),
                       calibration_tokens=int(cfg.data.calibration_tokens))
    return net, tokenizer, cfg.rft, ctx


def prune_half(model):
    """Keep the first half of every layer's FFN neurons: RFT runs on a pruned shape."""
    adapter = get_adapter(model)
    half = torch.arange(adapter.ffn_width(model) // 2)
    adapter.slice_ffn(model, [half] * len(adapter.decoder_layers(model)))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: thread synchronisation, not arithmetic, dominates; one thread is faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_text() -> torch.Tensor:
    """The 256-token calibration slice of the real WikiText-2 text (byte tokenizer), tokenised
    once for the module: [256]."""
    *_, ctx = setup("tiny_llama", overrides=SMALL_TEXT)
    return ctx.calibration_ids()


def windows(ids: torch.Tensor) -> torch.Tensor:
    return rft.sample_windows(ids, 32, 8, torch.Generator().manual_seed(0))  # [8, 32]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_lora_training_lowers_the_loss(name, small_text):
    model, _, rft_cfg, _ = setup(name, overrides=[*SMALL_TEXT, "rft.steps=20"])
    prune_half(model)
    report = rft.train_lora(rft.attach_lora(model, rft_cfg), windows(small_text), rft_cfg)
    curve = report["loss_curve"]
    assert report["steps"] == len(curve) == 20 and report["tokens_seen"] == 20 * 4 * 32
    # The same 8 windows again and again: the loss must fall clearly below its start (untrained,
    # it varies by ~0.02 between windows). A tiny random model's tied head keeps its logits
    # small, so the loss cannot fall far from ln 257 = 5.55: it levels off near 5.2.
    assert sum(curve[-5:]) / 5 < curve[0] - 0.15, curve
    assert 0 < report["trainable_params"] < sum(p.numel() for p in model.parameters()) / 2


def test_finetune_merges_into_a_plain_model():
    model, tokenizer, rft_cfg, ctx = setup("tiny_llama", overrides=[*SMALL_TEXT, "rft.steps=3"])
    prune_half(model)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}

    report = rft.finetune(model, tokenizer, rft_cfg, ctx)

    assert report["text"] == "calibration" and report["text_tokens"] == 256  # not the ppl text
    assert len(report["loss_curve"]) == report["steps"] == 3 and report["seconds"] > 0
    # merged: same parameter names and shapes, no adapter left, weights changed, grads restored
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert not any("lora" in n for n, _ in model.named_modules())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and not model.training


@pytest.mark.parametrize("name", TINY_MODELS)
def test_merged_checkpoint_reloads_with_the_adapted_logits(name, small_text, tmp_path,
                                                          token_batch):
    model, _, rft_cfg, _ = setup(name, overrides=[*SMALL_TEXT, "rft.steps=3"])
    prune_half(model)
    pruned_logits = logits(model, token_batch)

    peft_model = rft.attach_lora(model, rft_cfg)
    rft.train_lora(peft_model, windows(small_text), rft_cfg)
    adapted = logits(peft_model, token_batch)  # unmerged: base + (alpha/r) B A x
    assert not torch.allclose(adapted, pruned_logits, atol=1e-4)  # the adapters did something
    merged = peft_model.merge_and_unload()
    torch.testing.assert_close(logits(merged, token_batch), adapted, rtol=1e-5, atol=1e-5)

    merged.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)  # plain transformers, no peft
    adapter = get_adapter(reloaded)
    assert adapter.ffn_width(reloaded) == adapter.ffn_width(merged)
    torch.testing.assert_close(logits(reloaded, token_batch), logits(merged, token_batch),
                               rtol=0, atol=0)


def test_rft_none_leaves_the_model_untouched():
    model, tokenizer, rft_cfg, ctx = setup("tiny_llama", "none")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert rft.finetune(model, tokenizer, rft_cfg, ctx) is None
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hub_text_offline_fails_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model, tokenizer, rft_cfg, ctx = setup("tiny_llama", overrides=["rft.text=hub"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match="rft.text=calibration"):
        rft.finetune(model, tokenizer, rft_cfg, ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_targets_come_from_the_adapter(name):
    model, *_ = setup(name)
    adapter = get_adapter(model)
    every = rft.target_module_names(model, adapter, "all")
    ffn = rft.target_module_names(model, adapter, "ffn")
    layers = len(adapter.decoder_layers(model))
    per_layer_ffn = len(adapter.blocks(model)[0].ffn_in) + 1
    assert len(ffn) == layers * per_layer_ffn and set(ffn) < set(every)
    assert all(isinstance(model.get_submodule(n), torch.nn.Linear) for n in every)
    assert not any(n.endswith("lm_head") for n in every)  # the (tied) head is never adapted
    attention_suffix = every[0].rsplit(".", 1)[-1]  # an attention projection: one per layer
    assert len(rft.target_module_names(model, adapter, [attention_suffix])) == layers
    with pytest.raises(ConfigError, match="match no linear"):
        rft.target_module_names(model, adapter, ["no_such_proj"])


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "rft").glob("*.yaml")))
def test_every_rft_config_composes_and_validates(name):
    cfg = compose([f"rft={name}"])
    rft.check_config(cfg.rft)
    assert rft.enabled(cfg.rft) == (name != "none")


@pytest.mark.parametrize("override, problem", [
    ("rft.text=web", "rft.text"), ("rft.micro_batch_size=3", "micro_batch_size"),
    ("rft.target_modules=attention", "target_modules"), ("rft.seqlen=0", "rft.seqlen")])
def test_bad_rft_options_fail_clearly(override, problem):
    cfg = compose(["rft=lora", override])
    with pytest.raises(ConfigError, match=problem):
        rft.check_config(cfg.rft)
