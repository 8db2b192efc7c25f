"""The main job through its command line: outputs, bad input, resumable sweeps."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from yopo.config import REPO_ROOT

RUN = [sys.executable, str(REPO_ROOT / "src" / "run.py")]
FAST = ["model=tiny_llama", "method.episodes=2", "eval=none"]


def run(args, runs_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(RUN + list(args) + [f"paths.runs_dir={runs_dir}"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def files_under(folder: Path):
    return sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []


def test_main_job_writes_complete_run_and_skips_it_next_time(tmp_path):
    done = run(FAST + ["ratio=0.25"], tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "tiny_llama" / "prunenet" / "ratio0.25_seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("params_dense", "params_pruned", "ratio_target", "ratio_achieved",
                "ks_mean_dense_vs_pruned", "ks_per_layer", "policy_train_seconds",
                "total_seconds", "versions", "git_commit"):
        assert key in metrics, key
    assert metrics["ratio_target"] == 0.25 and metrics["ratio_achieved"] == pytest.approx(0.25)
    assert metrics["ratio_semantics"] == "ffn_width"
    assert len(metrics["ks_per_layer"]) == 3 and metrics["params_pruned"] < metrics["params_dense"]
    assert (run_dir / "policy.safetensors").is_file() and (run_dir / "policy.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(run_dir / "pruned_model")
    assert model.config.intermediate_size == 120
    assert sum(p.numel() for p in model.parameters()) == metrics["params_pruned"]
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes left nothing behind
    again = run(FAST + ["ratio=0.25"], tmp_path)
    assert again.returncode == 0 and "skipping" in again.stdout


def test_transferred_policy_prunes_at_another_ratio(tmp_path):
    assert run(FAST + ["ratio=0.5", "save_model=false"], tmp_path).returncode == 0
    source = tmp_path / "tiny_llama" / "prunenet" / "ratio0.5_seed0"
    reuse = run(FAST + ["ratio=0.2", f"policy={source}", "save_model=false"], tmp_path)
    assert reuse.returncode == 0, reuse.stderr
    [run_dir] = [p for p in (tmp_path / "tiny_llama" / "prunenet").iterdir() if "policy-" in p.name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["policy_train_ratio"] == 0.5 and metrics["ratio_target"] == 0.2
    assert metrics["ffn_width_pruned"] == 128


@pytest.mark.parametrize("args,message", [
    (["ratio=1.0"], "ratio=1.0 is out of range"),
    (["ratio=-0.2"], "ratio=-0.2 is out of range"),
    (["method.reward=ks"], "unknown reward 'ks'"),
])
def test_bad_input_fails_clearly_and_leaves_nothing(tmp_path, args, message):
    done = run(FAST + args, tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert files_under(tmp_path) == [] or not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("*.safetensors"))


def test_unknown_model_lists_the_known_ones(tmp_path):
    done = run(["model=llama9_999b", "eval=none"], tmp_path)
    assert done.returncode != 0
    assert "llama9_999b" in done.stderr and "smollm2_135m" in done.stderr


def test_policy_for_another_hidden_size_fails_clearly(tmp_path):
    from yopo.policy import RowPolicy, save_policy

    save_policy(RowPolicy(32, 8), tmp_path / "policy_src", {"model": "other"})
    done = run(FAST + [f"policy={tmp_path / 'policy_src'}"], tmp_path / "runs")
    assert done.returncode == 2
    assert "hidden size 32" in done.stderr and "hidden size 64" in done.stderr
    assert files_under(tmp_path / "runs") == []


def test_corrupt_policy_fails_clearly(tmp_path):
    from yopo.policy import RowPolicy, save_policy

    save_policy(RowPolicy(64, 8), tmp_path / "policy_src", {"model": "tiny"})
    (tmp_path / "policy_src" / "policy.safetensors").write_bytes(b"\x00" * 20)
    done = run(FAST + [f"policy={tmp_path / 'policy_src'}"], tmp_path / "runs")
    assert done.returncode == 2 and "corrupt" in done.stderr
    assert files_under(tmp_path / "runs") == []


def test_hub_model_without_hub_access_fails_clearly(tmp_path):
    done = run(["model=llama2_7b", "eval=none"], tmp_path)
    assert done.returncode == 2
    assert "meta-llama/Llama-2-7b-hf" in done.stderr and "hub" in done.stderr
    assert files_under(tmp_path) == []


def test_slicegpt_run_saves_a_checkpoint_that_reloads(tmp_path):
    done = run(["model=tiny_llama", "method=slicegpt", "ratio=0.25", "eval=none",
                "logger=none", "data.calibration_tokens=4096"], tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "tiny_llama" / "slicegpt" / "ratio0.25_seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["ratio_semantics"] == "hidden_dim" and "of the hidden size" in done.stdout
    model = AutoModelForCausalLM.from_pretrained(run_dir / "pruned_model", trust_remote_code=True)
    assert sum(p.numel() for p in model.parameters()) == metrics["params_pruned"]
    assert not (run_dir / "spectra.safetensors").exists()  # FFN1 spectra only for neuron methods


def test_recovery_fine_tuning_is_recorded_beside_the_run(tmp_path):
    done = run(["model=tiny_llama", "eval=none", "method=random", "logger=none", "rft=lora", "rft.samples=8",
                       "rft.seqlen=64", "data.calibration_tokens=4096"], tmp_path)
    assert done.returncode == 0, done.stderr
    metrics = json.loads(
        (tmp_path / "tiny_llama" / "random" / "ratio0.3_seed0_rft-lora" / "metrics.json").read_text())
    assert metrics["rft"]["setting"] == "lora" and len(metrics["rft"]["loss_curve"]) >= 1
    assert (tmp_path / "tiny_llama" / "random" / "ratio0.3_seed0_rft-lora" / "spectra.safetensors").is_file()


def test_sweep_reports_each_crashed_run_at_once_and_fails_at_the_end(tmp_path):
    # A learning rate of -1 crashes inside torch (not one of our input checks): Hydra would
    # hold the exception back until the sweep ends; each run says so as it fails.
    done = run(["-m", "ratio=0.2,0.3", "method.lr=-1"] + FAST, tmp_path)
    assert done.returncode != 0
    for ratio in ("0.2", "0.3"):
        assert f"error: run {tmp_path / 'tiny_llama' / 'prunenet' / f'ratio{ratio}_seed0'} failed" \
            in done.stderr
    assert "Invalid learning rate" in done.stderr and not list(tmp_path.rglob("metrics.json"))
