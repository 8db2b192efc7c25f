"""A run's identity: what changes a result changes the id; what cannot, does not."""
import pytest

from yopo import data
from yopo.config import compose
from yopo.identity import RUN_ID_LENGTH, identify
from yopo.methods.prunenet.policy import RowPolicy, save_policy


def run_id(*overrides):
    return identify(compose(["model=tiny_llama", *overrides])).run_id


def test_same_config_same_id_and_the_id_is_short_hex():
    first = run_id()
    assert first == run_id() and len(first) == RUN_ID_LENGTH
    int(first, 16)


@pytest.mark.parametrize("override", [
    "method.gamma=0.8", "ratio=0.2", "seed=1", "round_to=8", "eval=demo", "eval.limit=7",
    "rft=lora", "data.calibration_tokens=4096", "model=tiny_phi", "method=random",
    "model.dtype=bfloat16"])
def test_anything_that_can_change_the_result_changes_the_id(override):
    assert run_id(override) != run_id()


@pytest.mark.parametrize("override", [
    "paths.runs_dir=/elsewhere", "paths.cache_dir=/elsewhere", "paths.data_dir=/elsewhere",
    "logger=none", "save_model=false", "skip_existing=false",
    "launcher=joblib", "method.layer_batch=2", "method.spectrum_workers=3"])
def test_where_and_how_a_run_happens_does_not_change_the_id(override):
    assert run_id(override) == run_id()


def test_the_device_kind_is_part_of_the_run_and_which_device_of_a_kind_is_not(monkeypatch):
    # this machine has no GPU: `auto` is the CPU, and naming it changes nothing
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert run_id("device=cpu") == run_id("device=auto")
    on_gpu = run_id("device=cuda")
    assert on_gpu != run_id("device=cpu")  # a CPU and a GPU run of one config are two runs
    assert run_id("device=cuda:1") == on_gpu  # another GPU of the same kind: the same run
    # a model spread over the GPUs is a cuda run where they exist
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert run_id("+model.device_map=auto") == on_gpu == run_id("device=auto")


def test_a_deterministic_method_is_one_run_at_every_seed():
    assert run_id("method=magnitude", "seed=0") == run_id("method=magnitude", "seed=5")
    assert run_id("method=random", "seed=0") != run_id("method=random", "seed=5")
    found = identify(compose(["model=tiny_llama", "method=magnitude"]))
    assert "seed" in found.not_used and "seed" not in found.slug
    # recovery fine-tuning draws from the seed, whatever the method
    assert (run_id("method=magnitude", "rft=lora", "seed=0")
            != run_id("method=magnitude", "rft=lora", "seed=5"))


def test_a_reused_policy_is_identified_by_content_and_its_training_options_are_unused(tmp_path):
    save_policy(RowPolicy(64, 4), tmp_path / "a", {"train_ratio": 0.5, "seed": 0})
    save_policy(RowPolicy(64, 8), tmp_path / "b", {"train_ratio": 0.5, "seed": 0})
    with_a = identify(compose(["model=tiny_llama", f"policy={tmp_path / 'a'}"]))
    assert with_a.slug == "ratio0.3_seed0_policy" and "method.episodes" in with_a.not_used
    assert run_id(f"policy={tmp_path / 'a'}", "method.episodes=3") == with_a.run_id
    assert run_id(f"policy={tmp_path / 'b'}") != with_a.run_id  # other weights, other run
    (tmp_path / "a" / "policy.safetensors").rename(tmp_path / "a_moved")
    (tmp_path / "c").mkdir()
    (tmp_path / "a_moved").rename(tmp_path / "c" / "policy.safetensors")
    assert run_id(f"policy={tmp_path / 'c'}") == with_a.run_id  # same weights elsewhere
    assert run_id() != with_a.run_id


def test_other_data_is_another_run(monkeypatch):
    before = run_id()
    monkeypatch.setitem(data.CHECKSUMS, "wikitext2/wiki.test.raw", "0" * 64)
    assert run_id() != before


def test_generation_options_identify_only_self_generated_calibration():
    # local calibration text does not read the sampling settings: same run
    assert run_id("method=activation", "method.generation_temperature=0.7") == \
        run_id("method=activation")
    local = identify(compose(["model=tiny_llama", "method=activation"]))
    assert "method.generation_seed" in local.not_used
    # self-generated text is written with them: another run, and another than local text
    assert run_id("method=activation_self", "method.generation_temperature=0.7") != \
        run_id("method=activation_self")
    assert run_id("method=activation_self", "method.generation_seed=1") != \
        run_id("method=activation_self")
    assert run_id("method=activation_self") != run_id("method=activation",
                                                      "method.name=activation_self")
