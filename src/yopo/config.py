"""Hydra/OmegaConf glue: the resolvers the configs use, and composing configs outside Hydra's
command line (tests, notebooks)."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    from .identity import run_folder

    if not OmegaConf.has_resolver("run_folder"):  # <slug>_<run id>: yopo.identity
        OmegaConf.register_new_resolver("run_folder", run_folder)


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config that `python src/run.py <overrides>` would run, without Hydra's runtime
    section (hydra.* is not resolvable outside a Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides or []))


def experiment_grid(experiment: str) -> dict[str, list[str]]:
    """The sweep grid of conf/experiment/<experiment>.yaml: {key: [values]} as Hydra's basic
    sweeper reads `hydra.sweeper.params` (comma-separated)."""
    params = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    return {str(key): [v.strip() for v in str(value).split(",")] for key, value in params.items()}
