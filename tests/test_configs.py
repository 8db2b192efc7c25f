"""Every config in every group composes, and the pieces it names exist."""
import inspect

import pytest
from hydra.utils import get_class

from yopo.config import CONF_DIR, compose, experiment_grid
from yopo.errors import ConfigError
from yopo.identity import reused_policy
from yopo.methods.prunenet.policy import RowPolicy, save_policy


def options(group: str):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose([f"+experiment={experiment}"])
    assert cfg.model.name and cfg.method.name
    # its sweep grid names only methods that exist and ratios in range
    grid = experiment_grid(experiment)
    for method in grid.get("method", [cfg.method.name]):
        assert method in options("method"), method
    for ratio in grid["ratio"]:
        assert 0 <= float(ratio) < 1


@pytest.mark.parametrize("method", options("method"))
def test_every_method_names_an_importable_class(method):
    cfg = compose([f"method={method}"])
    assert cfg.method.name == method
    get_class(cfg.method._target_)


@pytest.mark.parametrize("model", options("model"))
def test_every_model_config_is_complete(model):
    cfg = compose([f"model={model}"])
    assert cfg.model.name == model
    assert cfg.model.source in ("gguf_package", "hub", "random")
    if cfg.model.source == "hub":
        assert "/" in cfg.model.hub_id


@pytest.mark.parametrize("transfer", [t for t in options("transfer") if t != "none"])
def test_transfer_finds_the_one_training_run(transfer, tmp_path):
    cfg = compose([f"transfer={transfer}", "ratio=0.1", "model=tiny_llama",
                   f"paths.runs_dir={tmp_path}"])
    train_ratio = cfg.transfer.train_ratio
    with pytest.raises(ConfigError, match=f"no complete run .* ratio {train_ratio:g} with seed 0"):
        reused_policy(cfg)
    folders = tmp_path / "tiny_llama" / "prunenet"
    for name, ratio, seed in (("a", train_ratio, 0), ("b", 0.5, 0), ("c", train_ratio, 1)):
        save_policy(RowPolicy(64, 4), folders / name, {"train_ratio": ratio, "seed": seed})
        (folders / name / "metrics.json").write_text("{}")
    save_policy(RowPolicy(64, 4), folders / "incomplete", {"train_ratio": train_ratio, "seed": 0})
    assert reused_policy(cfg) == folders / "a"
    save_policy(RowPolicy(64, 4), folders / "d", {"train_ratio": train_ratio, "seed": 0})
    (folders / "d" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"2 runs .*\(a, d\): pass policy="):
        reused_policy(cfg)


@pytest.mark.parametrize("experiment", ["paper_llama2_7b", "paper_phi2"])
def test_paper_experiments_put_the_baselines_beside_prunenet(experiment):
    grid = experiment_grid(experiment)
    assert {"prunenet", "prunenet_reference", "slicegpt", "random", "magnitude", "activation",
            "expected_activation"} <= set(grid["method"])
    assert grid["ratio"] == ["0.2", "0.25", "0.3"] and grid["seed"] == ["0", "1", "2"]


@pytest.mark.parametrize("method", options("method"))
def test_every_method_config_sets_every_option_of_its_class(method):
    # a default that lives only in the Python signature would not be part of the run's
    # identity (yopo.identity hashes the config): every option is spelled out in the YAML
    cfg = compose([f"method={method}"])
    cls = get_class(cfg.method._target_)
    options_ = {name for name, p in inspect.signature(cls.__init__).parameters.items()
                if name not in ("self", "name") and p.kind is p.KEYWORD_ONLY}
    assert options_ <= set(cfg.method), options_ - set(cfg.method)


@pytest.mark.parametrize("launcher", options("launcher"))
def test_every_launcher_composes(launcher):
    compose([f"launcher={launcher}"])
