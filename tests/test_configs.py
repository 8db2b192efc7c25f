"""Every config in every group composes, and the pieces it names exist."""
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from yopo.config import CONF_DIR, compose


def options(group: str):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = compose([f"+experiment={experiment}"])
    assert cfg.model.name and cfg.method.name
    # its sweep grid names only methods that exist and ratios in range
    grid = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    for method in str(grid.get("method", cfg.method.name)).split(","):
        assert method in options("method"), method
    for ratio in str(grid.ratio).split(","):
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
def test_transfer_points_at_the_training_run(transfer):
    cfg = compose([f"transfer={transfer}", "ratio=0.1"])
    train_ratio = cfg.transfer.train_ratio
    assert Path(cfg.policy).name == f"ratio{train_ratio:g}_seed{cfg.seed}"
    assert Path(cfg.policy).parent.name == cfg.method.name


@pytest.mark.parametrize("launcher", options("launcher"))
def test_every_launcher_composes(launcher):
    compose([f"launcher={launcher}"])
