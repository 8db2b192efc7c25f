"""Hydra/OmegaConf glue: the resolvers the configs use, and composing configs outside Hydra's
command line (tests, notebooks)."""
from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def run_name(ratio, seed, policy=None, rft="none") -> str:
    """The run folder name below <runs_dir>/<model>/<method>/: one folder per setting, so a
    sweep that finds a finished folder can skip it. No '=' in it: a run folder is also what
    `policy=<folder>` takes on the command line, where '=' would need quoting."""
    name = f"ratio{float(ratio):g}_seed{seed}"
    if policy:  # a transferred policy: name the run it came from
        source = Path(str(policy))
        source = source.parent if source.suffix == ".safetensors" else source
        name += "_policy-" + re.sub(r"[^A-Za-z0-9_.-]", "-", source.name)
    if rft and rft != "none":  # recovery fine-tuning gives another model: another folder
        name += f"_rft-{rft}"
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


def compose(overrides: list[str] | None = None) -> DictConfig:
    """The config that `python src/run.py <overrides>` would run, without Hydra's runtime
    section (hydra.* is not resolvable outside a Hydra run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return hydra_compose(config_name="config", overrides=list(overrides or []))
