"""scripts/recompute_ppl.py: a saved checkpoint's perplexity, recomputed from disk with
transformers' own loss, matches the run's metrics.json, and a wrong record is caught."""
import json
import os
import subprocess
import sys

import pytest

from yopo.config import REPO_ROOT

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.slow  # two subprocesses
def test_recomputed_perplexity_matches_the_record_and_catches_a_wrong_one(tmp_path):
    subprocess.run([sys.executable, "src/run.py", "model=tiny_llama", "method=random",
                    "ratio=0.25", "eval.tasks=[]", "eval.throughput=null", "logger=none",
                    "eval.perplexity.seqlen=64", "eval.perplexity.max_chunks=3",
                    f"paths.runs_dir={tmp_path}"], cwd=REPO_ROOT, env=OFFLINE, check=True,
                   capture_output=True)
    [run_dir] = (tmp_path / "tiny_llama" / "random").iterdir()
    check = [sys.executable, "scripts/recompute_ppl.py", str(run_dir)]
    done = subprocess.run(check, cwd=REPO_ROOT, env=OFFLINE, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = json.loads((run_dir / "metrics.json").read_text())["ppl_wikitext2"]
    assert f"{recorded:.4f}" in done.stdout

    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["ppl_wikitext2"] *= 1.01
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    wrong = subprocess.run(check, cwd=REPO_ROOT, env=OFFLINE, capture_output=True, text=True)
    assert wrong.returncode == 1
