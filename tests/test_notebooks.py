"""Every notebook executes headless (jupytext source -> .ipynb -> papermill, python3 kernel) on
the tiny sweep and writes tables that match the runs; every notebook also copes with no runs."""
import json
import re
from pathlib import Path

import jupytext
import matplotlib
import nbformat
import pandas as pd
import pytest

from yopo import paper, results
from yopo.config import REPO_ROOT
from yopo.render import notebook_sources, render_notebook
from tiny_runs import MODEL, RATIOS, TRANSFER, eval_record, run_dir, tiny_sweep

NOTEBOOKS = notebook_sources()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The shared runs, loaded, and output folders for this module's notebook runs."""
    runs_dir = tiny_sweep(tmp_path_factory)
    out = tmp_path_factory.mktemp("notebooks")
    return {"runs_dir": runs_dir, "runs": results.load_runs(runs_dir=runs_dir),
            "tables": out / "tables", "figures": out / "figures", "work": out}


def execute(name: str, runs_dir: Path, tables: Path, figures: Path, work: Path, **params):
    """Run notebooks/<name>*.py as the render stage does; returns its printed output."""
    [source] = [p for p in NOTEBOOKS if p.name.startswith(name)]
    done = render_notebook(source, work / f"{source.stem}.out.ipynb", {
        "runs_dir": str(runs_dir), "tables_dir": str(tables), "figures_dir": str(figures),
        **params}, cwd=work)
    cells = nbformat.read(done, as_version=4).cells
    return "".join(out.get("text", "") for c in cells if c.cell_type == "code"
                   for out in c.get("outputs", []))


def run(sweep, name, **params):
    return execute(name, sweep["runs_dir"], sweep["tables"], sweep["figures"], sweep["work"],
                   **params)


def table(sweep, name):
    return pd.read_csv(sweep["tables"] / f"{name}.csv")


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_form(source):
    nb = jupytext.read(source)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert "**Reads**" in first.source and "**Regenerate the runs**" in first.source
    [params] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    for name in ("runs_dir", "tables_dir", "figures_dir"):
        assert re.search(rf"^{name} = None", params.source, re.M)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # results come only through yopo.results: no reading of run files here
    assert set(re.findall(r"^(?:from|import) yopo.*$", code, re.M)) <= {
        "from yopo import paper, results", "from yopo import results",
        "from yopo.spectra import ecdf_figure",
        "from yopo.config import experiment_grid"}
    assert not re.search(r"metrics\.json|json\.load|open\(|load_file|safe_open", code)


@pytest.mark.slow  # a notebook kernel
def test_01_zeroshot_table(sweep):
    printed = run(sweep, "01")
    runs = sweep["runs"]
    got = table(sweep, "01_zeroshot")
    # the tiny runs have eval=none: no row, count or accuracy is invented for them (the rows
    # per ratio and evaluation subset are test_results' subject)
    assert len(runs[~runs["policy_transferred"]]) == len(RATIOS) and runs["zs_avg"].isna().all()
    assert got[got["model"] == MODEL].empty
    llama = got[got["model"] == "llama2_7b"].set_index("ratio")
    for (model, method, ratio), avg in paper.ZEROSHOT_AVG.items():
        if model == "llama2_7b" and method != "dense":
            assert llama.loc[ratio, f"paper {method} avg"] == avg
    assert "No zero-shot results" in printed
    for method in ("random", "activation", "expected_activation", "prunenet_reference"):
        assert f"{method} avg" in got.columns  # the paper grid's comparison, empty until run
    assert table(sweep, "01_zeroshot_runs").empty
    note = (sweep["tables"] / "01_zeroshot.md").read_text()
    assert note.startswith("- 3 complete runs") and "all from commit " in note


@pytest.mark.slow  # a notebook kernel
def test_02_phi2_table_without_phi2_runs(sweep):
    printed = run(sweep, "02")
    got = table(sweep, "02_phi2_zeroshot")
    phi2 = {r: avg for (m, method, r), avg in paper.ZEROSHOT_AVG.items()
            if m == "phi2" and method == "prunenet"}
    assert list(got["ratio"]) == sorted(phi2) and set(got["model"]) == {"phi2"}
    assert list(got["paper prunenet avg"]) == [phi2[r] for r in sorted(phi2)]
    # the experiment's methods have their columns, with no runs counted in them
    grid = {"prunenet", "prunenet_reference", "slicegpt", "random", "magnitude", "activation",
            "expected_activation"}
    counts = {c.removesuffix(" n"): got[c] for c in got.columns if c.endswith(" n")}
    assert set(counts) == grid and all((n == 0).all() for n in counts.values())
    assert got[[f"{m} avg" for m in grid]].isna().all().all()
    assert "No phi2 runs yet" in printed and "random over 3 seeds" in printed


@pytest.mark.slow  # a notebook kernel
def test_03_throughput_table_without_measurements(sweep):
    printed = run(sweep, "03")
    got = table(sweep, "03_throughput")
    # one row per variant: the reused policy's run is a variant of its own
    expected = sweep["runs"].groupby(["model", "variant", "ratio_target"]).size()
    assert list(zip(got["model"], got["variant"], got["ratio"], got["n"])) == [
        (*k, n) for k, n in expected.items()]
    assert set(got["variant"]) == {"prunenet", "prunenet[policy=reused]"}
    assert got["speedup"].isna().all()
    assert "No throughput measurements" in printed
    assert not (sweep["figures"] / "03_speedup.png").exists()


@pytest.mark.slow  # a notebook kernel
def test_03_throughput_figure_with_measurements(tmp_path):
    """Synthetic records in yopo.eval's shape (real throughput needs eval=default)."""
    runs_dir = tmp_path / "runs"
    records = [eval_record("prunenet", r) for r in (0.2, 0.3)]
    for record in records:
        folder = runs_dir / "m" / "prunenet" / f"r{record['ratio_target']}"
        folder.mkdir(parents=True)
        (folder / results.METRICS_FILE).write_text(json.dumps(record))
    execute("03", runs_dir, tmp_path / "t", tmp_path / "f", tmp_path)
    got = pd.read_csv(tmp_path / "t" / "03_throughput.csv")
    assert list(got["ratio"]) == [0.2, 0.3]
    setting = records[0]["throughput"]["settings"][0]
    assert list(got["throughput_settings_bs8_speedup_decode"]) == [setting["speedup"]["decode"]] * 2
    assert (tmp_path / "f" / "03_speedup.png").stat().st_size > 0


@pytest.mark.slow  # a notebook kernel
def test_04_policy_transfer_matrix(sweep):
    run(sweep, "04")
    runs = sweep["runs"].set_index("run_dir")
    ks = {(train, reuse): runs.loc[str(run_dir(sweep["runs_dir"], reuse, policy)),
                                   "ks_mean_dense_vs_pruned"]
          for train, reuse, policy in [(r, r, None) for r in RATIOS] + [(*TRANSFER, TRANSFER[0])]}
    name = f"04_transfer_{MODEL}_prunenet_ks_mean_dense_vs_pruned"
    matrix = table(sweep, name).set_index("train ratio")
    for (train, reuse), value in ks.items():
        assert matrix.loc[train, f"reuse {reuse:g}"] == pytest.approx(value)
    assert matrix.notna().sum().sum() == len(ks)  # no cell without a run
    assert (sweep["figures"] / f"{name}.png").exists()
    long = table(sweep, "04_policy_transfer")
    assert long["transferred"].sum() == 1


@pytest.mark.slow  # a notebook kernel
def test_05_compression_time(sweep):
    run(sweep, "05")
    runs = sweep["runs"]
    got = table(sweep, "05_compression_time").set_index("reused policy")
    for reused in (False, True):
        mine = runs[runs["policy_transferred"] == reused]
        assert got.loc[reused, "n"] == len(mine)
        assert got.loc[reused, "compression_s"] == pytest.approx(mine["compression_seconds"].mean())
    assert (sweep["figures"] / "05_compression_time.png").exists()


@pytest.mark.slow  # a notebook kernel
def test_06_spectra(sweep):
    run(sweep, "06")
    got = table(sweep, "06_ks_per_layer")
    for folder in results.run_folders(sweep["runs_dir"]):
        of_run = got[got["run_dir"] == str(folder)].sort_values("layer")
        assert of_run["ks"].tolist() == pytest.approx(results.load_spectra_for(folder).ks.tolist())
    for figure in ("06_ks_per_layer", f"06_spectra_ecdf_{MODEL}"):
        assert (sweep["figures"] / f"{figure}.png").exists()


@pytest.mark.slow  # a notebook kernel
def test_07_calibration_free(tmp_path):
    """Synthetic sweep records (perplexity per method) and the committed CSVs of the
    calibration-free experiment (experiments/calibration_free/results)."""
    runs_dir = tmp_path / "runs"
    ppl = {"activation": 40.0, "random": 200.0, "expected_activation": 46.0}
    for method, value in ppl.items():
        folder = runs_dir / "m" / method / "r0.2"
        folder.mkdir(parents=True)
        record = {**eval_record(method, 0.2), "ppl_wikitext2": value, "params_pruned": 100}
        (folder / results.METRICS_FILE).write_text(json.dumps(record))
    execute("07", runs_dir, tmp_path / "t", tmp_path / "f", tmp_path)
    sweep = pd.read_csv(tmp_path / "t" / "07_sweep.csv").set_index("method")
    assert sweep.loc["expected_activation", "ppl / activation"] == pytest.approx(46 / 40)
    assert sweep.loc["expected_activation", "ppl / random"] == pytest.approx(46 / 200)
    assert sweep.loc["random", "avg - activation"] == pytest.approx(0.0)
    experiment_dir = REPO_ROOT / "experiments" / "calibration_free" / "results"
    raw = pd.read_csv(experiment_dir / "ablation_calibration.csv")
    ablation = pd.read_csv(tmp_path / "t" / "07_ablation.csv").set_index("label")
    assert list(ablation.index) == list(dict.fromkeys(raw["label"]))
    random_rows = raw[raw["label"] == "random"]
    assert ablation.loc["random", "n"] == len(random_rows)
    assert ablation.loc["random", "ppl"] == pytest.approx(random_rows["ppl"].mean())
    assert ablation.loc["activation_2k", "x activation_2k"] == pytest.approx(1.0)
    per_layer = pd.read_csv(tmp_path / "t" / "07_layer_sensitivity.csv")
    assert len(per_layer) == len(pd.read_csv(experiment_dir / "layer_diagnostics.csv"))
    assert (tmp_path / "f" / "07_layer_sensitivity.png").stat().st_size > 0


@pytest.mark.slow  # a notebook kernel
def test_08_recovery_table(tmp_path):
    """Synthetic records with RFT in the pipeline's shape: the scores before RFT under
    "before_rft", after it at the top level (a real RFT run with evaluation takes minutes)."""
    runs_dir = tmp_path / "runs"
    for method, before_scale, after_scale in (("prunenet", 0.9, 1.0), ("random", 0.8, 0.95)):
        after, before = eval_record(method, scale=after_scale), eval_record(method,
                                                                            scale=before_scale)
        record = {**after, "model": "llama2_7b", "ppl_wikitext2": 20.0,
                  "rft": {"setting": "lora", "seconds": 60.0},
                  "before_rft": {"zeroshot": before["zeroshot"], "ppl_wikitext2": 40.0}}
        folder = runs_dir / "llama2_7b" / method / "rft"
        folder.mkdir(parents=True)
        (folder / results.METRICS_FILE).write_text(json.dumps(record))
    plain = runs_dir / "llama2_7b" / "prunenet" / "plain"  # no RFT: not a row of this table
    plain.mkdir()
    (plain / results.METRICS_FILE).write_text(json.dumps({**eval_record(), "model": "llama2_7b"}))
    execute("08", runs_dir, tmp_path / "t", tmp_path / "f", tmp_path)
    got = pd.read_csv(tmp_path / "t" / "08_recovery.csv").set_index("method")
    assert sorted(got.index) == ["prunenet", "random"]
    for method, before_scale, after_scale in (("prunenet", 0.9, 1.0), ("random", 0.8, 0.95)):
        row = got.loc[method]
        assert row["avg before"] == pytest.approx(100 * 0.52 * before_scale)
        assert row["avg gain"] == pytest.approx(100 * 0.52 * (after_scale - before_scale))
        assert row["ppl after / before"] == pytest.approx(0.5)
    assert got.loc["prunenet", "paper avg with RFT"] == paper.recovery_avg("llama2_7b", 0.3, True)
    assert pd.isna(got.loc["random", "paper avg with RFT"])
    assert (tmp_path / "f" / "08_recovery.png").stat().st_size > 0


@pytest.mark.slow  # a notebook kernel
def test_09_data_regimes_table_and_figure(tmp_path):
    """Synthetic records of the three regimes on two models (real ones need eval=subset)."""
    runs_dir = tmp_path / "runs"
    for model, factor in (("m1", 1.0), ("m2", 3.0)):
        for method, ppl, extra in (("activation", 20.0, {"calibration_source": "local"}),
                                   ("activation_self", 22.0, {"calibration_source": "self",
                                                              "data_regime": "self-generated text"}),
                                   ("random", 80.0, {})):
            folder = runs_dir / model / method / "r0.2"
            folder.mkdir(parents=True)
            record = {**eval_record(method, 0.2), "model": model, "ppl_wikitext2": factor * ppl,
                      **extra}
            (folder / results.METRICS_FILE).write_text(json.dumps(record))
    execute("09", runs_dir, tmp_path / "t", tmp_path / "f", tmp_path)
    got = pd.read_csv(tmp_path / "t" / "09_data_regimes.csv")
    assert list(zip(got["model"], got["method"], got["data regime"])) == [
        (m, method, regime) for m in ("m1", "m2") for method, regime in (
            ("random", "weights only"), ("activation_self", "self-generated text"),
            ("activation", "calibration text"))]
    assert list(got["ppl / activation"]) == pytest.approx([4.0, 1.1, 1.0] * 2)
    assert (tmp_path / "f" / "09_data_regimes.png").stat().st_size > 0


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_copes_with_no_runs(source, tmp_path):
    """Run in this process (no kernel start) against an empty runs folder: a table with a note,
    never an exception."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (tmp_path / "runs").mkdir()
    parameters = {"runs_dir": str(tmp_path / "runs"), "tables_dir": str(tmp_path / "t"),
                  "figures_dir": str(tmp_path / "f")}
    namespace = {"display": lambda *args, **kwargs: None}
    for cell in jupytext.read(source).cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, str(source), "exec"), namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(parameters)
    plt.close("all")
    written = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert written and all(name[:2] == source.name[:2] for name in written)
    assert any((tmp_path / "t" / n).read_text().startswith("- 0 complete runs") for n in written)
