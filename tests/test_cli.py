"""The main job through its command line: outputs, bad input, resumable sweeps."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from yopo.config import REPO_ROOT

pytestmark = pytest.mark.slow  # every test starts src/run.py in a subprocess (~10 s each)
RUN = [sys.executable, str(REPO_ROOT / "src" / "run.py")]
FAST = ["model=tiny_llama", "method.episodes=2", "eval=none"]


def run(args, runs_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(RUN + list(args) + [f"paths.runs_dir={runs_dir}"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def files_under(folder: Path):
    return sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []


def run_folders(parent: Path) -> list[Path]:
    """The run folders below <runs_dir>/<model>/<method>, named <slug>_<run id>."""
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


def record(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_main_job_writes_complete_run_and_skips_it_next_time(tmp_path):
    done = run(FAST + ["ratio=0.25"], tmp_path)
    assert done.returncode == 0, done.stderr
    [run_dir] = run_folders(tmp_path / "tiny_llama" / "prunenet")
    metrics = record(run_dir)
    assert run_dir.name == f"ratio0.25_seed0_{metrics['run_id']}" and len(metrics["run_id"]) == 12
    for key in ("run_id", "identity", "params_dense", "params_pruned", "ratio_target", "ratio_achieved",
                "ks_mean_dense_vs_pruned", "ks_per_layer", "policy_train_seconds",
                "total_seconds", "versions", "git_commit"):
        assert key in metrics, key
    assert metrics["ratio_target"] == 0.25 and metrics["ratio_achieved"] == pytest.approx(0.25)
    assert metrics["ratio_semantics"] == "ffn_width"
    assert len(metrics["ks_per_layer"]) == 3 and metrics["params_pruned"] < metrics["params_dense"]
    assert (run_dir / "policy.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(run_dir / "pruned_model")
    assert model.config.intermediate_size == 120
    assert sum(p.numel() for p in model.parameters()) == metrics["params_pruned"]
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes left nothing behind
    again = run(FAST + ["ratio=0.25"], tmp_path)
    assert again.returncode == 0 and "skipping" in again.stdout


def test_transferred_policy_prunes_at_another_ratio(tmp_path):
    assert run(FAST + ["ratio=0.5", "save_model=false"], tmp_path).returncode == 0
    [source] = run_folders(tmp_path / "tiny_llama" / "prunenet")
    reuse = run(FAST + ["ratio=0.2", f"policy={source}", "save_model=false"], tmp_path)
    assert reuse.returncode == 0, reuse.stderr
    [run_dir] = [p for p in run_folders(tmp_path / "tiny_llama" / "prunenet")
                 if p.name.startswith("ratio0.2_seed0_policy_")]
    metrics = record(run_dir)
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
    assert files_under(tmp_path) == []  # no run folder, no model/method folders


def test_unknown_model_lists_the_known_ones(tmp_path):
    done = run(["model=llama9_999b", "eval=none"], tmp_path)
    assert done.returncode != 0
    assert "llama9_999b" in done.stderr and "smollm2_135m" in done.stderr


def test_policy_for_another_hidden_size_fails_clearly(tmp_path):
    from yopo.methods.prunenet.policy import RowPolicy, save_policy

    save_policy(RowPolicy(32, 8), tmp_path / "policy_src", {"model": "other"})
    done = run(FAST + [f"policy={tmp_path / 'policy_src'}"], tmp_path / "runs")
    assert done.returncode == 2
    assert "hidden size 32" in done.stderr and "hidden size 64" in done.stderr
    assert files_under(tmp_path / "runs") == []


def test_corrupt_policy_fails_clearly(tmp_path):
    from yopo.methods.prunenet.policy import RowPolicy, save_policy

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
    [run_dir] = run_folders(tmp_path / "tiny_llama" / "slicegpt")
    metrics = record(run_dir)
    # deterministic: its folder names no seed, and the seed is recorded as not used
    assert run_dir.name.startswith("ratio0.25_") and "seed" not in run_dir.name
    assert "seed" in metrics["options_not_used"]
    assert metrics["ratio_semantics"] == "hidden_dim" and "of the hidden size" in done.stdout
    model = AutoModelForCausalLM.from_pretrained(run_dir / "pruned_model", trust_remote_code=True)
    assert sum(p.numel() for p in model.parameters()) == metrics["params_pruned"]
    assert not (run_dir / "spectra.safetensors").exists()  # FFN1 spectra only for neuron methods


def test_recovery_fine_tuning_is_recorded_beside_the_run(tmp_path):
    done = run(["model=tiny_llama", "eval=none", "method=random", "logger=none", "rft=lora", "rft.samples=8",
                       "rft.seqlen=64", "data.calibration_tokens=4096"], tmp_path)
    assert done.returncode == 0, done.stderr
    [run_dir] = run_folders(tmp_path / "tiny_llama" / "random")
    assert run_dir.name.startswith("ratio0.3_seed0_rft-lora_")
    metrics = record(run_dir)
    assert metrics["rft"]["setting"] == "lora" and len(metrics["rft"]["loss_curve"]) >= 1
    assert (run_dir / "spectra.safetensors").is_file()


def test_sweep_reports_each_crashed_run_at_once_and_fails_at_the_end(tmp_path):
    # A learning rate of -1 crashes inside torch (not one of our input checks): Hydra would
    # hold the exception back until the sweep ends; each run says so as it fails.
    done = run(["-m", "ratio=0.2,0.3", "method.lr=-1"] + FAST, tmp_path)
    assert done.returncode != 0
    for ratio in ("0.2", "0.3"):
        folder = re.escape(str(tmp_path / "tiny_llama" / "prunenet" / f"ratio{ratio}_seed0_"))
        assert re.search(f"error: run {folder}[0-9a-f]{{12}} failed", done.stderr)
    assert "Invalid learning rate" in done.stderr and not list(tmp_path.rglob("metrics.json"))


# ---- one config, one run ------------------------------------------------------------------------
def test_runs_that_differ_in_one_method_option_get_folders_of_their_own(tmp_path):
    done = run(["-m", "method.samples_per_episode=1,2"] + FAST + ["save_model=false"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "skipping" not in done.stdout
    folders = run_folders(tmp_path / "tiny_llama" / "prunenet")
    assert len(folders) == 2
    assert sorted(record(f)["config"]["method"]["samples_per_episode"] for f in folders) == [1, 2]
    again = run(["-m", "method.samples_per_episode=1,2"] + FAST + ["save_model=false"], tmp_path)
    assert again.stdout.count("skipping") == 2  # each complete run is found again


def test_changing_a_default_in_conf_recomputes(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    args = ["model=tiny_llama", "eval=none", "save_model=false"]
    assert run([f"--config-path={conf}"] + args, tmp_path / "runs").returncode == 0
    method_yaml = conf / "method" / "prunenet.yaml"
    method_yaml.write_text(method_yaml.read_text().replace("episodes: 20", "episodes: 3"))
    second = run([f"--config-path={conf}"] + args, tmp_path / "runs")
    assert second.returncode == 0 and "skipping" not in second.stdout
    folders = run_folders(tmp_path / "runs" / "tiny_llama" / "prunenet")
    assert sorted(len(record(f)["ks_history"]) for f in folders) == [4, 21]  # episodes + final


def test_transfer_from_same_named_policies_in_two_places_gives_two_runs(tmp_path):
    for seed in (0, 1):  # two different policies ...
        assert run(FAST + ["ratio=0.5", f"seed={seed}", "save_model=false"],
                   tmp_path / f"train{seed}").returncode == 0
        [trained] = run_folders(tmp_path / f"train{seed}" / "tiny_llama" / "prunenet")
        # ... in folders of the same name under different parents
        shutil.copytree(trained, tmp_path / "policies" / f"from{seed}" / "run")
    for seed in (0, 1):
        done = run(FAST + ["ratio=0.2", "save_model=false",
                           f"policy={tmp_path / 'policies' / f'from{seed}' / 'run'}"],
                   tmp_path / "runs")
        assert done.returncode == 0 and "skipping" not in done.stdout, done.stdout
    folders = run_folders(tmp_path / "runs" / "tiny_llama" / "prunenet")
    assert len(folders) == 2
    assert {record(f)["policy_source"] for f in folders} == {
        str(tmp_path / "policies" / f"from{s}" / "run") for s in (0, 1)}


def test_a_folder_holding_another_run_is_never_reused(tmp_path):
    assert run(FAST + ["save_model=false"], tmp_path).returncode == 0
    [folder] = run_folders(tmp_path / "tiny_llama" / "prunenet")
    metrics = record(folder)
    metrics["run_id"] = "0" * 12
    (folder / "metrics.json").write_text(json.dumps(metrics))
    again = run(FAST + ["save_model=false"], tmp_path)
    assert again.returncode == 2 and "holds a run with run_id 000000000000" in again.stderr
    assert record(folder)["run_id"] == "0" * 12  # left as it was


def test_a_complete_run_without_its_checkpoint_is_redone_when_one_is_asked_for(tmp_path):
    assert run(FAST + ["save_model=false"], tmp_path).returncode == 0
    again = run(FAST, tmp_path)
    assert again.returncode == 0 and "skipping" not in again.stdout
    [folder] = run_folders(tmp_path / "tiny_llama" / "prunenet")
    assert (folder / "pruned_model" / "config.json").is_file()


def test_a_policy_for_a_method_that_takes_none_fails_in_one_line(tmp_path):
    assert run(FAST + ["save_model=false", "ratio=0.5"], tmp_path / "train").returncode == 0
    [trained] = run_folders(tmp_path / "train" / "tiny_llama" / "prunenet")
    done = run(["model=tiny_llama", "eval=none", "method=random", f"policy={trained}"],
               tmp_path / "runs")
    assert done.returncode == 2 and "method=random takes no policy" in done.stderr
    assert "Traceback" not in done.stderr and files_under(tmp_path / "runs") == []


def test_reused_policy_records_its_training_options_as_not_used(tmp_path):
    assert run(FAST + ["save_model=false", "ratio=0.5"], tmp_path / "train").returncode == 0
    [trained] = run_folders(tmp_path / "train" / "tiny_llama" / "prunenet")
    first = run(FAST + ["save_model=false", f"policy={trained}"], tmp_path / "runs")
    # another number of training episodes cannot change a run that trains nothing
    second = run(["model=tiny_llama", "eval=none", "method.episodes=7", "save_model=false",
                  f"policy={trained}"], tmp_path / "runs")
    assert first.returncode == 0 and "skipping" in second.stdout
    [folder] = run_folders(tmp_path / "runs" / "tiny_llama" / "prunenet")
    assert "method.episodes" in record(folder)["options_not_used"]


def test_a_sweep_of_two_options_and_three_seeds_is_two_cells_of_three_runs(tmp_path):
    from yopo import results

    evaluated = ["model=tiny_llama", "method.episodes=1", "ratio=0.5", "eval=demo",
                 "eval.tasks=[piqa]", "eval.limit=2", "eval.perplexity.seqlen=64",
                 "eval.perplexity.max_chunks=1", "eval.throughput=null", "save_model=false",
                 "logger=none"]
    done = run(["-m", "method.samples_per_episode=1,2", "seed=0,1,2"] + evaluated, tmp_path)
    assert done.returncode == 0, done.stderr
    # the same method tuned on the calibration slice, into the same folder: not a result
    tuning = run(["model=tiny_llama", "method.episodes=1", "ratio=0.5", "eval=tuning",
                  "method.samples_per_episode=1", "save_model=false", "logger=none"], tmp_path)
    assert tuning.returncode == 0, tuning.stderr
    runs = results.load_runs("local", runs_dir=tmp_path)
    assert len(runs) == 7
    table = results.zeroshot_table(runs, ["tiny_llama"]).set_index("ratio")
    cells = {c.removesuffix(" n"): table.loc[0.5, c] for c in table.columns if c.endswith(" n")}
    assert cells == {"prunenet[samples_per_episode=1]": 3, "prunenet[samples_per_episode=2]": 3}
    regimes = results.regime_table(runs).set_index("variant")
    assert list(regimes["n"]) == [3, 3]  # the tuning run's perplexity is in neither cell
