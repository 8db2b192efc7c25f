"""The prepared device check runs every step at toy sizes on the CPU and writes its report."""
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
    assert steps["policy"]["fast"]["episodes"] == 2 and steps["policy"]["k"] == 179
    assert steps["reference"]["policy_params"] == 64 * 256 + 256 + 256
    models = {row["model"] for row in steps["throughput"]["rows"]}
    assert any(m.endswith("fused") for m in models) and len(models) == 4  # k exact/64, fused
    e2e = steps["end_to_end"]
    assert e2e["returncode"] == 0 and e2e["reload_recompute"]["returncode"] == 0
    assert e2e["params_pruned"] < e2e["params_dense"]
    assert (tmp_path / "out" / "gpu_check.md").read_text().startswith("# gpu_check (dry-run)")
