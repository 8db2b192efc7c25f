"""wandb logging of a finished run, offline for real (not WANDB_MODE=disabled), its failure
path, and the results loader reading the wandb run back."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from yopo import results, tracking
from yopo.config import compose
from yopo.errors import ConfigError
from tiny_runs import RATIOS, run_dir, tiny_sweep

pytestmark = pytest.mark.slow  # the tiny sweep (three src/run.py subprocesses) and wandb's CLI


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    return tiny_sweep(tmp_path_factory)


@pytest.fixture
def run_copy(sweep_dir, tmp_path):
    """A private copy of one finished run (logging writes into the run folder)."""
    source = run_dir(sweep_dir, RATIOS[0])
    target = tmp_path / "runs" / source.relative_to(sweep_dir)
    shutil.copytree(source, target)
    return target


def config_for(folder: Path, logger: str = "wandb", *overrides: str):
    """The run's config, with the given logger."""
    metrics = json.loads((folder / results.METRICS_FILE).read_text())
    return compose([f"model={metrics['model']}", f"ratio={metrics['ratio_target']}",
                    f"paths.runs_dir={folder.parents[2]}", f"logger={logger}",
                    *overrides])


def offline_summary(wandb_run_dir: Path) -> dict:
    """What wandb recorded, through its supported reader of offline runs."""
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect",
                          "--summary", "--json", str(wandb_run_dir)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_log_run_offline_writes_a_complete_wandb_run(run_copy, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's default: offline
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    metrics = json.loads((run_copy / results.METRICS_FILE).read_text())
    run_id = tracking.log_run(config_for(run_copy), run_copy, metrics)
    assert run_id
    assert "WANDB_DATA_DIR" not in os.environ and "WANDB_MODE" not in os.environ  # restored
    [wandb_run] = (run_copy / results.WANDB_SUBDIR).glob(f"offline-run-*-{run_id}")
    files = wandb_run / "files"
    assert json.loads((files / results.METRICS_FILE).read_text()) == metrics
    assert len(list(files.glob("media/table/**/ks_per_layer*.table.json"))) == 1
    assert len(list(files.glob("media/images/**/spectrum_ecdf*.png"))) == 1
    assert (run_copy / results.WANDB_SUBDIR / "data").is_dir()  # table staging stays inside

    recorded = offline_summary(wandb_run)
    assert recorded["state"] == "finished" and recorded["run_id"] == run_id
    assert recorded["config"]["ratio"] == metrics["ratio_target"]
    expected = results.summary_from_record(metrics, run_copy)
    assert {k: recorded["summary"][k] for k in expected} == expected
    table = json.loads(next(files.glob("media/table/**/*.table.json")).read_text())
    assert [row[1] for row in table["data"]] == pytest.approx(metrics["ks_per_layer"])

    # the loader finds the run id locally, and reads the same row from what wandb recorded
    local = results.load_runs("local", runs_dir=run_copy.parents[2])
    assert list(local["wandb_id"]) == [run_id]

    class Run:
        id, state, summary_metrics = run_id, recorded["state"], recorded["summary"]

    class Api:
        def runs(self, path, order="+created_at", **kwargs):
            return [Run()]

    pd.testing.assert_frame_equal(results.load_runs("wandb", api=Api()), local)


def test_a_logging_failure_is_loud_and_loses_nothing(run_copy, monkeypatch, caplog):
    import wandb

    def broken_table(*args, **kwargs):
        raise RuntimeError("table service down")

    monkeypatch.setattr(wandb, "Table", broken_table)
    before = (run_copy / results.METRICS_FILE).read_bytes()
    metrics = json.loads(before)
    assert tracking.log_run(config_for(run_copy), run_copy, metrics) is None
    failure = caplog.text
    assert "wandb logging FAILED" in failure and "table service down" in failure
    assert f"python -m yopo.tracking {run_copy}" in failure  # and how to redo it
    assert (run_copy / results.METRICS_FILE).read_bytes() == before
    # the half-logged wandb run does not count as logged
    assert list((run_copy / results.WANDB_SUBDIR).glob("offline-run-*"))
    assert results.wandb_run_id(run_copy) is None

    monkeypatch.undo()  # the service is back: the printed command logs the run
    assert tracking.main([str(run_copy), "--mode", "offline"]) == 0
    assert results.wandb_run_id(run_copy) is not None


def test_logger_none_logs_nothing(run_copy):
    metrics = json.loads((run_copy / results.METRICS_FILE).read_text())
    assert tracking.log_run(config_for(run_copy, "none"), run_copy, metrics) is None
    assert not (run_copy / results.WANDB_SUBDIR).exists()


@pytest.mark.parametrize("logger, match", [
    ({"backend": "mlflow"}, "unknown logger backend"),
    ({"backend": "wandb", "mode": "onlin", "project": "yopo"}, "logger.mode"),
    ({"backend": "wandb", "mode": "offline", "project": ""}, "logger.project"),
])
def test_bad_logger_configs_fail_early(logger, match):
    with pytest.raises(ConfigError, match=match):
        tracking.check_logger(logger)


def test_logger_configs_compose():
    for name in ("wandb", "none"):
        tracking.check_logger(compose([f"logger={name}"]).logger)
