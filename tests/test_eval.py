"""Evaluation on tiny random models: zero-shot through lm-eval, perplexity, throughput, data
errors, and the pipeline's dense cache."""
import copy
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data import DataError
from yopo.errors import ConfigError
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.eval import dense_cache_path
from yopo.eval.perplexity import wikitext2_perplexity
from yopo.eval.throughput import compare_throughput
from yopo.eval.zeroshot import evaluate_zeroshot
from yopo.paper import TASK_METRICS
from yopo.pipeline import run

from conftest import load_tiny


@pytest.fixture(scope="module")
def tiny_llama():
    return load_tiny("tiny_llama")


@pytest.fixture(scope="module")
def data_dir():
    return compose([]).data.dir


def test_metric_map_is_the_papers():
    assert TASK_METRICS == {"piqa": "acc_norm", "winogrande": "acc", "hellaswag": "acc_norm",
                             "arc_easy": "acc_norm", "arc_challenge": "acc_norm"}


@pytest.mark.slow  # lm-eval on every task
def test_random_model_scores_near_chance_offline(tiny_llama, data_dir):
    model, tokenizer = tiny_llama
    limit = 24
    scores = evaluate_zeroshot(model, tokenizer, list(TASK_METRICS), data_dir=data_dir,
                               limit=limit, batch_size=8)
    chance = {"piqa": 0.5, "winogrande": 0.5, "hellaswag": 0.25, "arc_easy": 0.25,
              "arc_challenge": 0.25}  # ARC: mostly 4 choices
    for task, metric in TASK_METRICS.items():
        entry = scores[task]
        assert entry["metric"] == metric and entry["n"] == limit
        assert 0.0 < entry["stderr"] < 0.2
        assert abs(entry["value"] - chance[task]) < 0.35  # ~3.5 standard errors at n=24
    assert abs(scores["avg"] - sum(chance.values()) / 5) < 0.2
    assert scores["avg"] == pytest.approx(sum(scores[t]["value"] for t in TASK_METRICS) / 5)
    assert scores["limit"] == limit


def test_perplexity_equals_a_direct_loop_over_chunks(tiny_llama, data_dir):
    model, tokenizer = tiny_llama
    seqlen, chunks, calibration = 64, 3, 1000
    result = wikitext2_perplexity(model, tokenizer, data_dir, calibration, seqlen=seqlen,
                                  max_chunks=chunks, batch_size=2)  # batches of 2 and 1
    ids = wikitext2_token_ids(tokenizer, data_dir)
    evaluation = ids[: ids.numel() - calibration]
    assert torch.equal(split_calibration(ids, calibration)[1], evaluation)
    nll = 0.0
    with torch.no_grad():
        for i in range(chunks):
            chunk = evaluation[i * seqlen:(i + 1) * seqlen]
            logits = model(chunk[None]).logits[0]
            nll += F.cross_entropy(logits[:-1], chunk[1:], reduction="sum").item()
    assert result["value"] == pytest.approx(math.exp(nll / (chunks * (seqlen - 1))), rel=1e-5)
    assert result["tokens"] == chunks * (seqlen - 1) and result["chunks"] == chunks


def test_tuning_perplexity_reads_only_the_calibration_slice(tiny_llama, data_dir):
    model, tokenizer = tiny_llama
    seqlen, calibration = 64, 1000
    result = wikitext2_perplexity(model, tokenizer, data_dir, calibration, seqlen=seqlen,
                                  max_chunks=2, text="calibration")
    ids = wikitext2_token_ids(tokenizer, data_dir)
    held_out = ids[ids.numel() - calibration:]  # the last 1000 tokens, nothing before them
    with torch.no_grad():
        losses = [model(c[None], labels=c[None]).loss.item()  # transformers' own mean NLL
                  for c in (held_out[:seqlen], held_out[seqlen:2 * seqlen])]
    assert result["value"] == pytest.approx(math.exp(sum(losses) / 2), rel=1e-5)
    assert result["text"] == "calibration"
    with pytest.raises(ConfigError, match="eval.perplexity.text"):
        wikitext2_perplexity(model, tokenizer, data_dir, calibration, text="test")
    cfg = compose(["model=tiny_llama", "eval=tuning"])
    assert cfg.eval.perplexity.text == "calibration" and not cfg.eval.tasks


def test_throughput_is_positive_and_ideal_speedup_matches_the_formula(tiny_llama):
    dense, _ = tiny_llama
    pruned = copy.deepcopy(dense)
    adapter = get_adapter(pruned)
    c = dense.config
    kept = 100  # of 160 FFN neurons
    adapter.slice_ffn(pruned, [torch.arange(kept)] * c.num_hidden_layers)
    result = compare_throughput(dense, pruned, adapter, [1, 2], prompt_tokens=16,
                                decode_tokens=4, warmup=0, repeats=1)
    for setting in result["settings"]:
        for name in ("dense", "pruned"):
            assert setting[name]["prefill_tokens_per_s"] > 0
            assert setting[name]["decode_tokens_per_s"] > 0
            assert setting[name]["peak_memory_bytes"] > 0
        assert setting["speedup"]["decode"] > 0
    # f from the config: per layer q,o [d, d], k,v [d, kv], gate/up/down [d, m]; LM head [V, d]
    d, m, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    kv = c.num_key_value_heads * d // c.num_attention_heads
    ffn = layers * 3 * d * m
    total = ffn + layers * (2 * d * d + 2 * d * kv) + c.vocab_size * d
    f, r = ffn / total, 1 - kept / m
    ideal = result["ideal_speedup"]
    assert ideal["ffn_share"]["flops"] == pytest.approx(f)
    assert ideal["ffn_ratio"] == pytest.approx(r)
    for phase in ("prefill", "decode"):
        assert ideal[phase] == pytest.approx(1 / (1 - r * f))


def test_missing_data_dir_is_a_data_error(tiny_llama, tmp_path):
    model, tokenizer = tiny_llama
    with pytest.raises(DataError, match="does not exist"):
        evaluate_zeroshot(model, tokenizer, ["piqa"], data_dir=tmp_path / "absent", limit=2)
    with pytest.raises(DataError, match="does not exist"):
        wikitext2_perplexity(model, tokenizer, tmp_path / "absent", 0, seqlen=16)


def test_altered_file_is_a_data_error(tiny_llama, data_dir, tmp_path):
    model, tokenizer = tiny_llama
    (tmp_path / "piqa").mkdir()
    for name in ("valid.jsonl", "valid-labels.lst"):
        shutil.copy(f"{data_dir}/piqa/{name}", tmp_path / "piqa" / name)
    labels = tmp_path / "piqa" / "valid-labels.lst"
    text = bytearray(labels.read_bytes())
    text[0] = ord("1") if text[0] == ord("0") else ord("0")  # flip one label
    labels.write_bytes(bytes(text))
    with pytest.raises(DataError, match="sha256"):
        evaluate_zeroshot(model, tokenizer, ["piqa"], data_dir=tmp_path, limit=2)


def test_hub_source_offline_fails_clearly(tiny_llama, monkeypatch):
    model, tokenizer = tiny_llama
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="eval.source=local"):
        evaluate_zeroshot(model, tokenizer, ["piqa"], source="hub", limit=2)


@pytest.mark.slow  # lm-eval on every task
def test_pipeline_records_pruned_and_cached_dense_metrics(tmp_path):
    overrides = ["model=tiny_llama", "method.episodes=1", "eval=demo", "save_model=false",
                 f"paths.runs_dir={tmp_path}", "eval.tasks=[piqa,winogrande]", "eval.limit=4",
                 "eval.perplexity.seqlen=64", "eval.perplexity.max_chunks=2",
                 "eval.throughput.batch_sizes=[1]", "eval.throughput.prompt_tokens=8",
                 "eval.throughput.decode_tokens=2", "eval.throughput.repeats=1"]
    first = run(compose(overrides + ["ratio=0.5"]), tmp_path / "a")
    cache = dense_cache_path(compose(overrides + ["ratio=0.5"]))
    assert cache.is_file() and first["dense"]["cached"] is None
    second = run(compose(overrides + ["ratio=0.25"]), tmp_path / "b")
    assert second["dense"]["cached"] == str(cache)  # the sweep's second ratio reuses it
    assert second["dense"]["zeroshot"] == first["dense"]["zeroshot"]
    recorded = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert recorded["zeroshot"]["limit"] == 4 and set(TASK_METRICS) & set(
        recorded["zeroshot"]) == {"piqa", "winogrande"}
    assert recorded["ppl_wikitext2"] > 1 and recorded["dense"]["ppl_wikitext2"] > 1
    assert recorded["throughput"]["settings"][0]["speedup"]["prefill"] > 0
    assert recorded["peak_memory_bytes"]["pruned"] > 0 and recorded["eval_seconds"] > 0


@pytest.mark.parametrize("content", ["{not json", json.dumps({"zeroshot": None})])
def test_corrupt_dense_cache_is_one_clear_error(tmp_path, content):
    from yopo.errors import YopoError
    from yopo.eval import dense_scores

    cfg = compose(["model=tiny_llama", "eval=demo", f"paths.runs_dir={tmp_path}"])
    path = dense_cache_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(YopoError, match="dense-score cache .* is corrupt .*delete that file"):
        dense_scores(None, None, cfg)  # fails on the file before touching a model
