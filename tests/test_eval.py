"""Evaluation on tiny random models: zero-shot through lm-eval, perplexity, throughput, data
errors, and the pipeline's dense cache."""
import bz2
import copy
import itertools
import json
import math
import shutil
from pathlib import Path

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


def file_answers(data_dir, task, n):
    """The first n examples of `task` read straight from the data files, independently of the
    loaders: (choice texts in the file's order, gold index) each. WinoGrande's choices are the
    sentence up to the blank with each option filled in (lm-eval scores the rest of the sentence
    after each), so its choice is the request's context; the other tasks' is the continuation."""
    def jsonl(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in itertools.islice(f, n)]

    if task == "piqa":
        labels = Path(data_dir, "piqa/valid-labels.lst").read_text().split()
        return [([d["sol1"], d["sol2"]], int(label))
                for d, label in zip(jsonl(Path(data_dir, "piqa/valid.jsonl")), labels)]
    if task == "winogrande":
        docs = jsonl(Path(data_dir, "winogrande/validation.jsonl"))
        return [([d["sentence"][:d["sentence"].index("_")] + d[f"option{i}"] for i in (1, 2)],
                 int(d["answer"]) - 1) for d in docs]
    if task == "hellaswag":  # 6 lines an example: context, gold index, four endings
        with bz2.open(Path(data_dir, "hellaswag/hellaswag_val_full.txt.bz2"), "rt") as f:
            lines = [line.rstrip("\n") for line in itertools.islice(f, 6 * n)]
        return [(lines[i + 2:i + 6], int(lines[i + 1])) for i in range(0, len(lines), 6)]
    name = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}[task]
    out = []
    for d in jsonl(Path(data_dir, f"arc/{name}-Test.jsonl")):
        choices = d["question"]["choices"]
        out.append(([c["text"] for c in choices],
                     [c["label"] for c in choices].index(d["answerKey"])))
    return out


@pytest.mark.slow  # lm-eval loads every task
def test_zeroshot_scores_a_model_rigged_to_know_a_known_share_of_answers(tiny_llama, data_dir,
                                                                          monkeypatch):
    # The rigged model knows the gold answer (from the files above) of the first `known`
    # examples of each task and picks a wrong choice for the others, so each accuracy is exactly
    # known / limit. A wrong gold mapping (a flipped or shifted label, choices reordered, examples
    # out of order, one task's score under another's name) moves at least one of them.
    limit = 24
    known = {"piqa": 21, "winogrande": 15, "hellaswag": 9, "arc_easy": 18, "arc_challenge": 5}
    answers = {task: file_answers(data_dir, task, limit) for task in TASK_METRICS}

    def rigged_loglikelihood(self, requests):
        out = []
        for req in requests:
            task = req.task_name.removeprefix("yopo_")
            choices, gold = answers[task][req.doc_id]
            context, continuation = req.args
            text = " ".join((context if task == "winogrande" else continuation).split())
            index = [i for i, c in enumerate(choices) if " ".join(c.split()) == text]
            assert len(index) == 1, (task, req.doc_id, text)  # the rigging sees each choice
            preferred = gold if req.doc_id < known[task] else (gold + 1) % len(choices)
            out.append((0.0 if index[0] == preferred else -10.0, False))
        return out

    monkeypatch.setattr("lm_eval.models.huggingface.HFLM.loglikelihood", rigged_loglikelihood)
    model, tokenizer = tiny_llama
    scores = evaluate_zeroshot(model, tokenizer, list(TASK_METRICS), data_dir=data_dir,
                               limit=limit)
    for task, metric in TASK_METRICS.items():
        p = known[task] / limit
        assert scores[task] == {"metric": metric, "value": pytest.approx(p), "n": limit,
                                # the sample standard deviation of 0/1 scores over sqrt(n)
                                "stderr": pytest.approx(math.sqrt(p * (1 - p) / (limit - 1)))}
        # example by example, so that no two errors can cancel in the mean
        examples = scores["examples"][task]
        assert examples["doc_id"] == list(range(limit))
        assert examples["value"] == [1.0] * known[task] + [0.0] * (limit - known[task])
    assert scores["avg"] == pytest.approx(sum(known.values()) / (5 * limit))
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
    assert recorded["device"] == "cpu" and recorded["threads"] >= 1 and recorded["device_name"]
    assert recorded["dtype"] == "float32"
    # each example's score, pruned and dense (the cached dense scores bring theirs along): the
    # mean over examples is lm-eval's own aggregate, and the four documents are ids 0-3
    examples = json.loads((tmp_path / "b" / "example_scores.json").read_text())
    for side, scores in (("pruned", recorded["zeroshot"]), ("dense", recorded["dense"]["zeroshot"])):
        for task in ("piqa", "winogrande"):
            kept = examples[side][task]
            assert kept["doc_id"] == [0, 1, 2, 3] and kept["metric"] == TASK_METRICS[task]
            assert sum(kept["value"]) / 4 == pytest.approx(scores[task]["value"])
    assert examples["before_rft"] is None and "examples" not in recorded["dense"]


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
