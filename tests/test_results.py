"""The results loader (local run folders and wandb), spectra files, the paper's constants and
the shared table builders, on a tiny sweep of real runs (tests/tiny_runs.py)."""
import json
import math
import shutil
import warnings

import pandas as pd
import pytest
import torch

from yopo import paper, results
from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.models import load_model
from yopo.spectra import SPECTRA_FILE, SpectraError, ffn1_spectra, load_spectra, save_spectra
from tiny_runs import RATIOS, TRANSFER, eval_record, run_dir, tiny_sweep


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tiny_sweep(tmp_path_factory)


def metrics_of(folder):
    return json.loads((folder / results.METRICS_FILE).read_text())


class FakeRun:
    """What load_runs uses of wandb.apis.public.Run."""

    def __init__(self, run_id, summary, state="finished"):
        self.id, self.name, self.state = run_id, run_id, state
        self.summary_metrics, self.config = summary, {}


class FakeApi:
    """What load_runs uses of wandb.Api: runs(path, order=...) -> iterable of runs."""

    def __init__(self, runs):
        self._runs, self.paths = runs, []

    def runs(self, path=None, filters=None, order="+created_at", per_page=50, **kwargs):
        self.paths.append(path)
        assert order == "+created_at"  # the loader relies on oldest-first to keep the latest
        return list(self._runs)


@pytest.mark.slow  # the tiny sweep: src/run.py subprocesses
def test_local_loader_reads_every_run_of_the_sweep(runs_dir):
    df = results.load_runs("local", runs_dir=runs_dir)
    expected = {run_dir(runs_dir, r): False for r in RATIOS}
    expected[run_dir(runs_dir, TRANSFER[1], policy_from=TRANSFER[0])] = True
    assert sorted(df["run_dir"]) == sorted(str(p) for p in expected)
    assert list(df.columns) == results.COLUMNS  # eval=none: no throughput_* columns
    for row in df.to_dict("records"):
        folder = next(p for p in expected if str(p) == row["run_dir"])
        m = metrics_of(folder)
        assert row["run_id"] == m["run_id"] and folder.name.endswith("_" + m["run_id"])
        for key in ("git_commit", "model", "method", "ratio_target", "seed", "ratio_achieved", "params_dense",
                    "params_pruned", "params_removed_fraction", "policy_source",
                    "policy_train_ratio", "compression_seconds", "policy_train_seconds",
                    "ks_mean_dense_vs_pruned", "ffn_width_pruned"):
            assert row[key] == m[key], key
        assert row["policy_transferred"] == expected[folder]
        # eval=none: every evaluation column is missing, never invented
        for key in ("ppl_wikitext2", "zs_avg", "zs_piqa", "dense_zs_avg", "speedup"):
            assert math.isnan(row[key]), key
        assert row["wandb_id"] is None
    transferred = df[df["policy_transferred"]].iloc[0]
    assert transferred["policy_train_ratio"] == TRANSFER[0]
    assert transferred["ratio_target"] == TRANSFER[1]


@pytest.mark.slow  # the tiny sweep: src/run.py subprocesses
def test_wandb_source_gives_the_same_frame_as_local(runs_dir):
    local = results.load_runs("local", runs_dir=runs_dir)
    logged = [FakeRun(f"id{i}", results.summary_from_record(metrics_of(p), p))
              for i, p in enumerate(sorted(results.run_folders(runs_dir)))]
    # a crashed run and a run whose summary lacks the record are not results
    logged.append(FakeRun("crashed", dict(logged[0].summary_metrics), state="crashed"))
    logged.append(FakeRun("empty", {"_step": 0}))
    api = FakeApi(logged)
    remote = results.load_runs("wandb", project="me/yopo", api=api)
    assert api.paths == ["me/yopo"]
    assert list(remote.columns) == list(local.columns)
    pd.testing.assert_frame_equal(remote.drop(columns="wandb_id"),
                                  local.drop(columns="wandb_id"))
    assert set(remote["wandb_id"]) == {f"id{i}" for i in range(len(local))}


@pytest.mark.slow  # the tiny sweep: src/run.py subprocesses
def test_wandb_source_keeps_the_latest_log_of_a_run_folder(runs_dir):
    folder = run_dir(runs_dir, RATIOS[0])
    old, new = metrics_of(folder), metrics_of(folder)
    new["ks_mean_dense_vs_pruned"] = old["ks_mean_dense_vs_pruned"] + 1.0
    api = FakeApi([FakeRun("old", results.summary_from_record(old, folder)),
                   FakeRun("new", results.summary_from_record(new, folder))])
    df = results.load_runs("wandb", api=api)
    assert list(df["wandb_id"]) == ["new"]
    assert df["ks_mean_dense_vs_pruned"].iloc[0] == new["ks_mean_dense_vs_pruned"]


def test_summary_round_trip_keeps_the_record():
    record = {"model": "m", "zeroshot": {"piqa": {"value": 0.5, "stderr": 0.01}, "limit": 100},
              "ks_per_layer": [0.1, 0.2], "throughput": {"settings": [{"batch_size": 1}]},
              "config": {"ratio": 0.3}}
    summary = results.summary_from_record(record, "/runs/x")
    assert summary["zeroshot/piqa/value"] == 0.5 and "config" not in str(list(summary))
    back = results.record_from_summary(summary)
    assert back == {**{k: v for k, v in record.items() if k != "config"}, "run_dir": "/runs/x"}
    # None values are not stored (wandb drops them) and read back as missing
    assert "dense" not in results.summary_from_record({**record, "dense": None}, "/runs/x")


def test_run_row_reads_the_evaluation_record():
    record = eval_record()
    df = results.frame([results.run_row(record, "/runs/x", "abc")])
    row = df.iloc[0]
    for task in paper.TASKS:
        assert row[f"zs_{task}"] == record["zeroshot"][task]["value"]
        assert row[f"zs_{task}_stderr"] == record["zeroshot"][task]["stderr"]
        assert row[f"zs_{task}_metric"] == paper.TASK_METRICS[task]
        assert row[f"dense_zs_{task}"] == record["dense"]["zeroshot"][task]["value"]
    assert (row["zs_avg"], row["zs_avg_stderr"], row["eval_limit"]) == (
        record["zeroshot"]["avg"], record["zeroshot"]["avg_stderr"], 100)
    assert (row["ppl_wikitext2"], row["dense_ppl_wikitext2"]) == (12.5, 10.0)
    assert row["rft"] is None and math.isnan(row["rft_seconds"])
    assert row["throughput_settings_bs8_pruned_decode_tokens_per_s"] == 12.0
    assert row["throughput_ideal_speedup_decode"] == 1.28
    assert (row["peak_memory_bytes_dense"], row["peak_memory_bytes_pruned"]) == (1000, 800)
    assert math.isnan(row["peak_memory_bytes"])  # a dict here: its numbers have own columns
    assert results.speedup_columns(df) == [
        ("throughput_settings_bs8_speedup_decode", "throughput_ideal_speedup_decode"),
        ("throughput_settings_bs8_speedup_prefill", "throughput_ideal_speedup_prefill")]
    # scalar speedups (an older record shape) get the plain columns
    flat = {**record, "throughput": {"speedup": 1.2, "ideal_speedup": 1.3},
            "rft": {"setting": "lora", "seconds": 7.0}}
    df = results.frame([results.run_row(flat, "/runs/y", None)])
    assert (df["rft"].iloc[0], df["rft_seconds"].iloc[0]) == ("lora", 7.0)
    assert (df["speedup"].iloc[0], df["ideal_speedup"].iloc[0]) == (1.2, 1.3)
    assert results.speedup_columns(df) == [("speedup", "ideal_speedup")]


def test_loader_copes_with_missing_partial_and_broken_runs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / results.METRICS_FILE).write_text(json.dumps(
        {"model": "m", "method": "x", "ratio_target": 0.2}))
    (tmp_path / "b").mkdir()  # no ratio: not a complete run record
    (tmp_path / "b" / results.METRICS_FILE).write_text(json.dumps({"model": "m"}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / results.METRICS_FILE).write_text("{not json")
    (tmp_path / "d" / ".tmp-pruned_model-x").mkdir(parents=True)  # an interrupted write
    with pytest.warns(UserWarning, match="unreadable"):
        df = results.load_runs(runs_dir=tmp_path)
    assert list(df["run_dir"]) == [str(tmp_path / "a")]
    assert df["params_pruned"].isna().all() and df["zs_avg"].isna().all()
    with pytest.warns(UserWarning, match="does not exist"):
        empty = results.load_runs(runs_dir=tmp_path / "nowhere")
    assert empty.empty and list(empty.columns) == results.COLUMNS
    with pytest.raises(results.ResultsError, match="local"):
        results.load_runs("sql")


@pytest.mark.slow  # the tiny sweep: src/run.py subprocesses
def test_spectra_agree_with_the_methods_own_ks(runs_dir):
    for folder in results.run_folders(runs_dir):
        spectra = load_spectra(folder)
        m = metrics_of(folder)
        layers = m["config"]["model"]["config"]["num_hidden_layers"]
        hidden = m["config"]["model"]["config"]["hidden_size"]
        assert spectra.dense.shape == spectra.pruned.shape == (layers, hidden)
        assert torch.all(spectra.dense[:, :-1] >= spectra.dense[:, 1:])  # descending
        # PruneNet measured KS on the kept rows; the spectra file on the saved, sliced model
        assert spectra.ks.tolist() == pytest.approx(m["ks_per_layer"], abs=1e-6)


def test_ffn1_spectra_are_each_layers_singular_values():
    cfg = compose(["model=tiny_llama"])
    model, _ = load_model(cfg.model, cfg.paths.cache_dir)
    adapter = get_adapter(model)
    spectra = ffn1_spectra(model, adapter, layer_batch=2)  # 3 layers: batches of 2 and 1
    reference = torch.stack([torch.linalg.svdvals(b.ffn1.detach().double())
                             for b in adapter.blocks(model)]).float()
    assert torch.allclose(spectra, reference, rtol=1e-5, atol=1e-6)


def test_spectra_files_fail_clearly(tmp_path):
    with pytest.raises(SpectraError, match="no spectra"):
        load_spectra(tmp_path)
    assert results.load_spectra_for(tmp_path) is None
    saved = save_spectra(tmp_path, torch.rand(2, 5).sort(descending=True).values,
                         torch.rand(2, 4).sort(descending=True).values)
    assert torch.equal(load_spectra(tmp_path).ks, saved.ks)
    assert [p.name for p in tmp_path.iterdir()] == [SPECTRA_FILE]  # nothing half-written left
    (tmp_path / SPECTRA_FILE).write_bytes(b"garbage")
    with pytest.raises(SpectraError, match="unreadable"):
        load_spectra(tmp_path)


@pytest.mark.slow  # the tiny sweep: src/run.py subprocesses
def test_layer_ks_reads_every_runs_spectra(runs_dir, tmp_path):
    df = results.load_runs(runs_dir=runs_dir)
    ks = results.layer_ks(df)
    for folder in results.run_folders(runs_dir):
        got = ks[ks["run_dir"] == str(folder)].sort_values("layer")["ks"].tolist()
        assert got == pytest.approx(load_spectra(folder).ks.tolist())
    # a run without spectra is skipped, not an error
    copy = tmp_path / "runs" / "r"
    shutil.copytree(run_dir(runs_dir, RATIOS[0]), copy)
    (copy / SPECTRA_FILE).unlink()
    assert results.layer_ks(results.load_runs(runs_dir=tmp_path / "runs")).empty


def test_paper_numbers_are_looked_up_not_guessed():
    assert paper.zeroshot("llama2_7b", "prunenet", 0.1 + 0.2) == {
        **{t: None for t in paper.TASKS}, "avg": paper.ZEROSHOT_AVG[("llama2_7b", "prunenet", 0.3)]}
    assert paper.zeroshot("smollm2_135m", "prunenet", 0.3)["avg"] is None
    assert paper.recovery_avg("phi2", 0.3, finetuned=True) < paper.recovery_avg("phi2", 0.3, False)
    tp = paper.throughput("llama2_7b", 0.3)
    assert tp["speedup"] == pytest.approx(tp["pruned"] / tp["dense"])
    assert paper.throughput("llama2_7b", 0.2) is None


def test_zeroshot_table_puts_methods_side_by_side_with_the_paper():
    records = [eval_record("prunenet", 0.3, seed=0, scale=1.0),
               eval_record("prunenet", 0.3, seed=1, scale=0.9),
               eval_record("slicegpt", 0.3, seed=0, scale=0.8),
               {**eval_record("prunenet", 0.2, scale=0.1), "policy_source": "/runs/other"},
               eval_record("prunenet", 0.3, scale=0.95, rft="lora")]
    # a policy-training run without zero-shot evaluation (eval=none) is not counted
    unevaluated = {k: v for k, v in eval_record("prunenet", 0.3, seed=2).items() if k != "zeroshot"}
    records.append(unevaluated)
    # a run scored on another subset of the tasks is a row of its own, not averaged in
    records.append(eval_record("prunenet", 0.3, seed=3, scale=0.5, limit=50))
    runs = results.frame(results.run_row({**r, "model": "llama2_7b"}, f"/r{i}", None)
                         for i, r in enumerate(records))
    full_table = results.zeroshot_table(runs, ["llama2_7b"])
    # prunenet ran with and without RFT: two variants, each named by its RFT setting
    subset = full_table[full_table["protocol"] == "5 tasks (local), first 50 per task"]
    subset = subset.set_index("ratio")
    assert list(subset.index) == [0.3] and subset.loc[0.3, "prunenet[rft=none] n"] == 1
    assert subset.loc[0.3, "prunenet[rft=none] avg"] == pytest.approx(100 * 0.5 * 0.52)
    table = full_table[full_table["protocol"] != "5 tasks (local), first 50 per task"]
    table = table.set_index("ratio")
    # ratios: measured (0.3) and the paper's (0.2, 0.25, 0.3); the transferred run is left out
    assert list(table.index) == [0.2, 0.25, 0.3]
    assert table.loc[0.2, "prunenet[rft=none] n"] == 0
    assert math.isnan(table.loc[0.2, "prunenet[rft=none] avg"])
    assert table.loc[0.3, "prunenet[rft=none] n"] == 2
    assert table.loc[0.3, "prunenet[rft=none] avg"] == pytest.approx(100 * (0.52 + 0.9 * 0.52) / 2)
    assert table.loc[0.3, "slicegpt piqa"] == pytest.approx(100 * 0.8 * 0.5)
    # recovery fine-tuned runs are a column group of their own, not averaged into the method
    assert table.loc[0.3, "prunenet[rft=lora] n"] == 1
    assert table.loc[0.3, "prunenet[rft=lora] avg"] == pytest.approx(100 * 0.95 * 0.52)
    assert table.loc[0.3, "dense avg"] == pytest.approx(60.0)
    for method in ("prunenet", "slicegpt"):
        for ratio in (0.2, 0.25, 0.3):
            assert table.loc[ratio, f"paper {method} avg"] == paper.zeroshot(
                "llama2_7b", method, ratio)["avg"]
    long = results.zeroshot_runs(runs, ["llama2_7b"])
    assert len(long) == (len(records) - 1) * (len(paper.TASKS) + 1)  # all but the unevaluated
    assert set(long["metric"].dropna()) == set(paper.TASK_METRICS.values())
    assert long["limit"].max() == 100


def test_zeroshot_table_gives_columns_to_methods_not_run_yet():
    runs = results.frame([results.run_row({**eval_record("prunenet", 0.3), "model": "m"}, "/r",
                                          None)])
    table = results.zeroshot_table(runs, ["m"], ["random", "prunenet"]).set_index("ratio")
    assert table.loc[0.3, "random n"] == 0 and math.isnan(table.loc[0.3, "random avg"])
    assert table.loc[0.3, "prunenet n"] == 1


def test_a_cell_is_one_configuration_and_n_counts_its_seeds():
    # a sweep of two option values and three seeds into one runs folder, beside a method
    # with one configuration; scales chosen so that every mean can be worked out by hand
    records = [eval_record("expected_activation", 0.2, seed=s, scale=scale,
                           options={"noise_var": noise, "noise_power": 0.5})
               for noise, scales in ((0.03, (1.0, 0.9, 0.8)), (0.05, (0.5, 0.6, 0.7)))
               for s, scale in enumerate(scales)]
    records.append(eval_record("activation", 0.2, seed=0, options={"noise_power": 0.5}))
    runs = results.frame(results.run_row(r, f"/r{i}", None) for i, r in enumerate(records))
    assert sorted(set(runs["variant"])) == ["activation", "expected_activation[noise_var=0.03]",
                                           "expected_activation[noise_var=0.05]"]
    assert runs["variant_id"].nunique() == 3
    table = results.zeroshot_table(runs, ["m"]).set_index("ratio")
    assert table.loc[0.2, "expected_activation[noise_var=0.03] n"] == 3
    assert table.loc[0.2, "expected_activation[noise_var=0.05] n"] == 3
    # mean over seeds of 0.52 * scale, in percent: (1.0 + 0.9 + 0.8) / 3 = 0.9; 0.6
    assert table.loc[0.2, "expected_activation[noise_var=0.03] avg"] == pytest.approx(52 * 0.9)
    assert table.loc[0.2, "expected_activation[noise_var=0.05] avg"] == pytest.approx(52 * 0.6)
    assert table.loc[0.2, "activation n"] == 1
    # the same run found twice (one run id in two folders) is one run, not two seeds
    twice = results.frame([results.run_row({**records[0], "run_id": "abc"}, d, None)
                           for d in ("/copy1", "/copy2")])
    assert results.zeroshot_table(twice, ["m"]).set_index("ratio").loc[0.2, "expected_activation n"] == 1


def test_a_column_is_one_protocol_and_tuning_runs_are_never_results():
    default = eval_record("random", 0.2, seed=0)
    tuning = eval_record("random", 0.2, seed=0, ppl_text="calibration")
    tuning.pop("zeroshot")
    tuning["ppl_wikitext2"] = 99.0
    tuning["ppl_protocol"] = {**tuning["ppl_protocol"], "chunks": 8, "seqlen": 512}
    pruned_only = {k: v for k, v in eval_record("random", 0.2, seed=1).items()
                   if k not in ("zeroshot", "ppl_wikitext2", "ppl_protocol")}  # eval=none
    runs = results.frame(results.run_row(r, f"/r{i}", None)
                         for i, r in enumerate([default, tuning, pruned_only]))
    assert list(runs["ppl_protocol"]) == ["evaluation text, 16 x 2048 (32768 held out)",
                                          "calibration text, 8 x 512 (32768 held out)", None]
    table = results.regime_table(runs)
    assert len(table) == 1 and table.loc[0, "ppl"] == 12.5 and table.loc[0, "n"] == 1
    assert "16 x 2048" in table.loc[0, "protocol"]
    assert list(results.evaluated_runs(runs)["run_dir"]) == ["/r0"]


def test_provenance_says_when_runs_come_from_different_commits_protocols_or_machines():
    def row(commit, limit, i, device="cpu"):
        record = {**eval_record(limit=limit, device=device), "git_commit": commit}
        return results.run_row(record, f"/r{i}", None)

    same = results.frame([row("a" * 40, 100, 0), row("a" * 40, 100, 1)])
    assert results.provenance(same) == f"all from commit {'a' * 12}"
    mixed = results.frame([row("a" * 40, 100, 0), row("b" * 40 + "-dirty", None, 1),
                           row("b" * 40 + "-dirty", 100, 2, device="cuda")])
    said = results.provenance(mixed)
    assert f"from 2 commits ({'a' * 12}: 1 runs, {'b' * 12}-dirty: 2 runs)" in said
    assert "2 evaluation protocols (zero-shot: 5 tasks (local), first 100 per task" in said
    assert "full sets" in said
    assert "made on 2 machines (cpu (name not recorded): 2 runs, cuda (name not recorded)" in said
    assert said in results.describe_source(mixed, "wandb", None, "p")


def test_write_table_writes_csv_and_markdown(tmp_path):
    table = pd.DataFrame({"ratio": [0.1, 0.2], "avg": [61.234, float("nan")]})
    csv, md = results.write_table(table, tmp_path / "t", "x", note="- a note")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    text = md.read_text()
    assert text.startswith("- a note\n") and "61.23" in text and "nan" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty table is written, not an error
        results.write_table(pd.DataFrame(columns=["ratio"]), tmp_path / "t", "empty")
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "empty.csv", "empty.md", "x.csv", "x.md"]


def test_regime_table_sets_each_method_beside_the_reference():
    def row(method, ppl, scale, i, **extra):
        record = {**eval_record(method, 0.2, seed=i, scale=scale), "ppl_wikitext2": ppl,
                  "params_pruned": 2_000_000, **extra}
        return results.run_row(record, f"/r{i}", None)

    runs = results.frame([
        row("activation", 20.0, 1.0, 0, calibration_source="local"),
        row("activation_self", 24.0, 0.9, 1, data_regime="self-generated text",
            calibration_source="self"),
        row("random", 50.0, 0.8, 2), row("random", 70.0, 0.6, 3),
        row("random", 10.0, 1.0, 4, rft={"setting": "lora"})])  # RFT runs: not in this table
    assert list(runs["data_regime"]) == ["calibration text", "self-generated text",
                                         "weights only", "weights only", "weights only"]
    table = results.regime_table(runs).set_index("method")
    assert list(table.index) == ["random", "activation_self", "activation"]  # by regime
    assert table.loc["random", "n"] == 2 and table.loc["random", "ppl"] == 60.0
    assert table.loc["random", "ppl / activation"] == pytest.approx(60.0 / 20.0)
    assert table.loc["activation_self", "ppl / activation"] == pytest.approx(1.2)
    # averages in percent: 0.52 * scale, against the reference's 52
    assert table.loc["random", "avg"] == pytest.approx(100 * 0.52 * 0.7)
    assert table.loc["activation_self", "avg - activation"] == pytest.approx(-5.2)
    assert table.loc["activation", "params M"] == 2.0 and table.loc["random", "dense ppl"] == 10.0


def test_speedup_panels_are_labelled_in_words():
    assert results.speedup_label("throughput_settings_bs8_speedup_decode") == "decode, batch 8"
    assert results.speedup_label("throughput_ideal_speedup_prefill") == "prefill"
    assert results.speedup_label("speedup") == "speedup"


def test_throughput_table_keeps_machines_and_layouts_apart():
    # one config on a CPU and on a GPU: two runs (the device kind is in the identity), and
    # their speeds are two rows; another evaluation subset does not split a speed
    gpu = {**eval_record("prunenet", 0.3, seed=1, limit=None, device="cuda"),
           "device_name": "NVIDIA H100", "threads": 16}
    cpu = {**eval_record("prunenet", 0.3, seed=0), "device_name": "AMD EPYC", "threads": 2}
    fused = eval_record("prunenet", 0.3, seed=2)
    fused = {**fused, "device_name": "AMD EPYC", "threads": 2,
             "identity": {**fused["identity"], "round_to": 1,
                          "inference": {"fuse_gate_up": False}}}
    runs = results.frame([results.run_row(cpu, "/a", None), results.run_row(gpu, "/b", None),
                          results.run_row(fused, "/c", None)])
    table = results.throughput_table(runs)
    assert list(table["n"]) == [1, 1, 1]
    assert set(table["hardware"]) == {"cpu: AMD EPYC, 2 threads", "cuda: NVIDIA H100, 16 threads"}
    assert list(table["fuse_gate_up"].fillna("not recorded")) == ["False", "not recorded",
                                                                   "not recorded"]
    assert list(table["throughput_settings_bs8_speedup_decode"]) == [1.2, 1.2, 1.2]


def test_ablation_chain_by_hand():
    rows = [("dense", 10.0), ("activation_2k", 20.0), ("+a", 40.0), ("+b", 30.0), ("x", 50.0),
            ("+c", 15.0), ("random", 100.0), ("random", 200.0)]
    raw = pd.DataFrame([{"label": label, "method": "m", "overrides": "", "ratio": 0.2,
                         "chunks": 8, "seed": i, "ppl": ppl, "ratio_achieved": 0.2}
                        for i, (label, ppl) in enumerate(rows)])
    table = results.ablation_table(raw).set_index("label")
    assert list(table.index) == ["dense", "activation_2k", "+a", "+b", "x", "+c", "random"]
    # each + row against the + row before it; the first against the row just above it
    assert table.loc["+a", "x previous"] == pytest.approx(40 / 20)
    assert table.loc["+b", "x previous"] == pytest.approx(30 / 40)
    assert table.loc["+c", "x previous"] == pytest.approx(15 / 30)  # "x" is not in the chain
    assert table[["x previous"]].loc[["dense", "x", "random"]].isna().all().all()
    assert table.loc["random", "n"] == 2 and table.loc["random", "ppl"] == 150.0
    assert table.loc["random", "ppl_min"] == 100.0 and table.loc["x", "x dense"] == 5.0
    assert table.loc["+a", "x activation_2k"] == 2.0
    assert results.ablation_table(pd.DataFrame()).empty


def test_layer_table_joins_sensitivity_and_diagnostics():
    sensitivity = pd.DataFrame({"layer": [0, 0, 1, 1], "rule": ["random", "act"] * 2,
                                "ppl": [30.0, 21.0, 40.0, 22.0]})
    diagnostics = pd.DataFrame({"layer": [0, 1], "sp_act_bias": [0.5, -0.2]})
    table = results.layer_table(sensitivity, diagnostics).set_index("layer")
    assert table.loc[1, "ppl only this layer pruned: random"] == 40.0
    assert table.loc[0, "ppl only this layer pruned: act"] == 21.0
    assert table.loc[1, "sp_act_bias"] == -0.2
    assert results.layer_table(pd.DataFrame(), pd.DataFrame()).empty
