"""Self-generated calibration text (methods/calibration.py, source `self`): what it samples,
that it is cached per model by weights, and that runs record their data regime."""
import json

import pytest
import torch

from conftest import load_tiny
from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.errors import ConfigError
from yopo.methods.activation import ActivationNeurons
from yopo.methods.base import PruneContext
from yopo.data.calibration import Calibration, data_regime, sample_sequences
from yopo.models import byte_tokenizer
from yopo.pipeline import run


def greedy_continuation(model, start_id: int, n_new: int) -> torch.Tensor:
    """Argmax decoding without a KV cache: the whole prefix re-read at every step [1 + n_new]."""
    ids = torch.tensor([[start_id]])
    with torch.no_grad():
        for _ in range(n_new):
            next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return ids[0]


def test_sampling_at_vanishing_temperature_is_greedy_decoding():
    model, _ = load_tiny("tiny_llama")
    model.eval()
    sampled = sample_sequences(model, start_id=3, n=2, seq_len=12, temperature=1e-4, seed=0,
                               device="cpu")
    expected = greedy_continuation(model, 3, 11)
    assert sampled.shape == (2, 12)
    assert torch.equal(sampled[0], expected) and torch.equal(sampled[1], expected)


def test_sampling_is_seeded_and_draws_from_the_distribution():
    model, _ = load_tiny("tiny_llama")
    model.eval()
    a = sample_sequences(model, 3, 4, 16, temperature=1.0, seed=0, device="cpu")
    assert torch.equal(a, sample_sequences(model, 3, 4, 16, temperature=1.0, seed=0, device="cpu"))
    b = sample_sequences(model, 3, 4, 16, temperature=1.0, seed=1, device="cpu")
    assert not torch.equal(a, b)
    assert (a[:, 0] == 3).all() and len({tuple(row) for row in a.tolist()}) == 4


def self_context(tmp_path, name="tiny_llama"):
    return PruneContext(0.3, tokenizer=byte_tokenizer(), model_name=name, cache_dir=tmp_path)


def test_self_text_is_cached_per_model_weights(tmp_path, monkeypatch):
    model, _ = load_tiny("tiny_llama")
    calibration = Calibration("self", tokens=64, seq_len=16)
    first = calibration.batches(self_context(tmp_path), model)
    assert first.shape == (4, 16) and calibration.report()["self_text_cached"] is False
    files = list((tmp_path / "self_text").glob("*.safetensors"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1))
    again = Calibration("self", tokens=64, seq_len=16).batches(self_context(tmp_path), model)
    assert torch.equal(again, first) and not calls  # read back, the model not run
    monkeypatch.undo()
    other, _ = load_tiny("tiny_llama")
    with torch.no_grad():
        other.lm_head.weight.mul_(2)  # same config name, other weights: its own text
    Calibration("self", tokens=64, seq_len=16).batches(self_context(tmp_path), other)
    assert len(list((tmp_path / "self_text").glob("*.safetensors"))) == 2


def test_activation_on_self_text_reads_no_dataset(tmp_path):
    model, _ = load_tiny("tiny_llama")
    ctx = self_context(tmp_path)  # no data_dir: the local slice cannot be read
    method = ActivationNeurons(calibration_source="self", calibration_tokens=64,
                               calibration_seq_len=16)
    report = method.prune(model, get_adapter(model), ctx)
    assert report["data_regime"] == "self-generated text"
    assert report["calibration_tokens"] == 64 and len(report["self_text_sha256"]) == 64


@pytest.mark.parametrize("kwargs,match", [({"source": "self", "temperature": 0.0},
                                           "generation_temperature")])
def test_bad_generation_settings_fail_early(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Calibration(**kwargs)


def test_data_regime_names():
    assert data_regime("local") == data_regime("hub") == "calibration text"
    assert data_regime("self") == "self-generated text"
    assert data_regime(None) == "weights only"


@pytest.mark.parametrize("method,regime", [("activation_self", "self-generated text"),
                                           ("magnitude", "weights only")])
def test_runs_record_their_data_regime(tmp_path, method, regime):
    cfg = compose(["model=tiny_llama", f"method={method}", "ratio=0.25", "save_model=false",
                   "eval=none", "logger=none", "data.calibration_tokens=2048",
                   f"paths.cache_dir={tmp_path / 'cache'}"]
                  + (["method.calibration_tokens=64", "method.calibration_seq_len=16"]
                     if method.endswith("_self") else []))
    metrics = run(cfg, tmp_path / "run")
    assert metrics["data_regime"] == regime
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["data_regime"] == regime
