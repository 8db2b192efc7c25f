"""The prepared device check runs every step at toy sizes on the CPU and writes its report."""
import argparse
import importlib
import json
import os
import subprocess
import sys

import pytest

from yopo.config import REPO_ROOT

pytestmark = pytest.mark.slow  # a minute of subprocesses


def test_gpu_check_dry_run_writes_every_step(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run",
                           "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert list(report["steps"]) == ["cuda_tests", "policy", "reference", "throughput",
                                     "end_to_end"]
    assert not [name for name, step in report["steps"].items() if "error" in step]
    steps = report["steps"]
    # "no error" holds with every CUDA test skipped: on this CPU each of the 5 (three tests and
    # one over two methods) must be skipped, and only for want of a GPU, which a GPU supplies
    assert steps["cuda_tests"]["tests"] == 5
    assert list(steps["cuda_tests"]["skipped"].values()) == ["needs a GPU"] * 5
    assert steps["policy"]["fast"]["episodes"] == 2 and steps["policy"]["k"] == 179
    assert steps["reference"]["policy_params"] == 64 * 256 + 256 + 256
    models = {row["model"] for row in steps["throughput"]["rows"]}
    assert any(m.endswith("fused") for m in models) and len(models) == 4  # k exact/64, fused
    e2e = steps["end_to_end"]
    assert e2e["returncode"] == 0 and e2e["reload_recompute"]["returncode"] == 0
    assert e2e["params_pruned"] < e2e["params_dense"]
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# gpu_check (dry-run)")


def test_cuda_tests_step_fails_on_a_gpu_where_the_tests_are_skipped(monkeypatch):
    # pytest exits 0 when it skips every test; on a GPU that must fail the step. Here (no GPU)
    # the tests skip, so the step, told it runs on cuda, has to say so instead of passing.
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    with pytest.raises(RuntimeError, match="skipped 5 of 5 tests on cuda"):
        gpu_check.cuda_tests(argparse.Namespace(device="cuda"), gpu_check.sizes("dry-run"))
