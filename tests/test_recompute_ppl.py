"""scripts/recompute_ppl.py: a saved checkpoint's perplexity, recomputed from disk with
transformers' own loss, matches the run's metrics.json, and a wrong record is caught; the script
reads the WikiText-2 text and the calibration split itself, so a bug in yopo's reader or split
is caught too."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import load_tiny
from yopo.config import REPO_ROOT, compose
from yopo.data import wikitext
from yopo.eval.perplexity import wikitext2_perplexity

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
DATA_DIR = compose([]).data.dir
PROTOCOL = {"calibration_tokens": 4096, "seqlen": 64, "max_chunks": 3}


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


def load_script():
    """scripts/recompute_ppl.py as a fresh module (it binds whatever yopo holds at import)."""
    spec = importlib.util.spec_from_file_location("recompute_ppl",
                                                  REPO_ROOT / "scripts" / "recompute_ppl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recorded_run(run_dir):
    """A run folder as the pipeline leaves it: the checkpoint, and metrics.json with the
    perplexity that yopo's evaluation (with whatever reader yopo has now) measures on it."""
    model, tokenizer = load_tiny("tiny_llama")
    model.save_pretrained(run_dir / "pruned_model")
    tokenizer.save_pretrained(run_dir / "pruned_model")
    protocol = wikitext2_perplexity(model, tokenizer, DATA_DIR, **PROTOCOL)
    (run_dir / "metrics.json").write_text(json.dumps(
        {"ppl_wikitext2": protocol["value"], "ppl_protocol": protocol}))


def wrong_join(original):  # rows joined with one newline instead of two
    return lambda data_dir: original(data_dir).replace("\n\n", "\n")


def wrong_split(original):  # the calibration slice taken from the start of the text
    return lambda ids, n: (ids[:n], ids[n:])


@pytest.mark.parametrize("name, bug", [("wikitext2_text", wrong_join),
                                       ("split_calibration", wrong_split)])
def test_recompute_catches_a_bug_in_yopos_text_or_split(tmp_path, monkeypatch, name, bug):
    """The same run recorded with yopo's reader as it is, and with a broken one (patched into
    every yopo module that holds it): the script agrees with the first and not the second."""
    recorded_run(tmp_path / "right")
    recorded, again = load_script().recompute(tmp_path / "right", DATA_DIR)
    assert again == pytest.approx(recorded, rel=1e-5)

    original = getattr(wikitext, name)
    for module in [m for key, m in sys.modules.items() if key.startswith("yopo")]:
        if getattr(module, name, None) is original:
            monkeypatch.setattr(module, name, bug(original))
    recorded_run(tmp_path / "wrong")
    recorded, again = load_script().recompute(tmp_path / "wrong", DATA_DIR)
    assert again != pytest.approx(recorded, rel=1e-3)
