"""The embedded SmolLM2: load, prune 30 %, reload from disk, perplexity on real text."""
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.methods.base import PruneContext, kept_width
from yopo.methods.prunenet.method import PruneNet
from yopo.models import ModelUnavailableError, count_parameters, find_packaged_gguf, load_model

pytestmark = pytest.mark.slow


def perplexity(model, ids):
    with torch.no_grad():
        return math.exp(model(ids, labels=ids).loss.item())


def test_smollm2_prunes_saves_and_reloads(tmp_path):
    cfg = compose([])
    model, tokenizer = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    # 1024 tokens of real English prose from the evaluation part of WikiText-2
    _, text_ids = split_calibration(wikitext2_token_ids(tokenizer, cfg.data.dir),
                                    cfg.data.calibration_tokens)
    ids = text_ids[:1024].unsqueeze(0)
    dense_ppl = perplexity(model, ids)
    assert 1.0 < dense_ppl < 30.0

    adapter = get_adapter(model)
    dense_params = count_parameters(model)
    report = PruneNet(episodes=2, samples_per_episode=1).prune(
        model, adapter, PruneContext(ratio=0.3, run_dir=tmp_path, model_name="smollm2_135m"))
    assert report["ffn_width_pruned"] == 1075
    assert dense_params - count_parameters(model) == 30 * (1536 - 1075) * 3 * 576
    model.save_pretrained(tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    pruned_ppl = perplexity(reloaded, ids)
    assert math.isfinite(pruned_ppl)
    assert pruned_ppl == pytest.approx(perplexity(model, ids), rel=1e-4)


def test_smollm2_authors_algorithm_policy_size_and_seeded_masks():
    from yopo.methods.prunenet.reference import PruneNetReference

    cfg = compose([])
    model, _ = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
    adapter = get_adapter(model)
    masks = []
    for seed in (0, 1):
        keep, report = PruneNetReference(episodes=1).keep_indices(
            model, adapter, 1075, PruneContext(ratio=0.3, seed=seed))
        assert report["policy_params"] == 887_808  # d*m + m + m = 576*1536 + 1536 + 1536
        masks.append(torch.stack(keep))  # [30, 1075]
    assert masks[0].shape == (30, 1075) and not torch.equal(masks[0], masks[1])


def gemma_or_skip():
    cfg = compose(["model=gemma3_270m"])
    if not (Path(cfg.paths.cache_dir) / "models" / "gemma3_270m" / "config.json").exists():
        try:
            find_packaged_gguf(cfg.model, Path(cfg.paths.cache_dir) / "models")
        except ModelUnavailableError as err:
            pytest.skip(f"Gemma-3-270M is not installed ({err})")
    return cfg


def test_gemma3_270m_loads_prunes_and_reloads(tmp_path):
    from yopo.adapters.gemma import GemmaAdapter
    from yopo.methods.random import RandomNeurons

    cfg = gemma_or_skip()
    model, tokenizer = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
    assert model.config.model_type == "gemma3_text" and count_parameters(model) == 268_098_176
    assert (model.config.num_hidden_layers, model.config.hidden_size,
            model.config.intermediate_size) == (18, 640, 2048)
    adapter = get_adapter(model)
    assert isinstance(adapter, GemmaAdapter)
    _, text_ids = split_calibration(wikitext2_token_ids(tokenizer, cfg.data.dir),
                                    cfg.data.calibration_tokens)
    ids = text_ids[:512].unsqueeze(0)
    assert 1.0 < perplexity(model, ids) < 100.0  # a real model on real prose
    RandomNeurons().prune(model, adapter, PruneContext(ratio=0.2))
    model.save_pretrained(tmp_path / "pruned")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
    assert reloaded.config.intermediate_size == kept_width(2048, 0.2)
    assert perplexity(reloaded, ids) == pytest.approx(perplexity(model, ids), rel=1e-4)
