"""Logging a finished run to Weights & Biases (conf/logger/: wandb or none).

`log_run` is called after metrics.json is written, so the run's results never depend on it: a
logging failure is reported loudly and the run stays complete. What one wandb run holds: the
resolved config, the record as a flattened summary (yopo.results.summary_from_record), the
policy's KS per episode as history, a per-layer KS table, the FFN1 spectrum ECDF figure and
metrics.json itself.

Offline by default: everything (the wandb run folder and the table staging area,
WANDB_DATA_DIR) stays inside the run folder, so a run folder can be moved and synced later
with `wandb sync <run_dir>/wandb/offline-run-*`. Online: `wandb login`, then
`logger.mode=online logger.project=<project>` (or WANDB_MODE=online).

Re-log runs whose logging failed: python -m yopo.tracking RUN_DIR [RUN_DIR ...] [--mode MODE]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from .config import CONF_DIR, register_resolvers
from .errors import ConfigError
from .identity import METRICS_FILE
from .results.schema import WANDB_SUBDIR, summary_from_record
from .spectra import SPECTRA_FILE, Spectra, ecdf_figure, load_spectra

log = logging.getLogger(__name__)

BACKENDS = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")


def check_logger(logger: Mapping[str, Any] | None) -> None:
    """Fail early (before a run starts) on a logger config that log_run could not use."""
    if logger is None:
        return
    backend = logger.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown logger backend '{backend}' (use logger=wandb or logger=none)")
    if backend == "wandb" and logger.get("mode") not in WANDB_MODES:
        raise ConfigError(f"logger.mode='{logger.get('mode')}' is not one of {WANDB_MODES} "
                          "(WANDB_MODE in the environment sets its default)")
    if backend == "wandb" and not logger.get("project"):
        raise ConfigError("logger.project is empty: name a wandb project, e.g. "
                          "logger.project=yopo")


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore them: wandb reads WANDB_MODE at
    init and WANDB_DATA_DIR whenever it stages a table."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_name(run_dir: Path) -> str:
    return "/".join(run_dir.parts[-3:])  # <model>/<method>/<ratio=..._seed=...>


def _png(fig):
    """A matplotlib Figure as a PIL image. wandb.Image(figure) needs matplotlib.pyplot imported
    (wandb 0.31 refers to it without importing it); rendering here keeps pyplot out."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    buffer.seek(0)
    return Image.open(buffer)


def _log_wandb(logger: Mapping[str, Any], config: dict[str, Any], run_dir: Path,
               metrics: Mapping[str, Any], spectra: Spectra | None) -> str:
    import wandb

    wandb_dir = run_dir / WANDB_SUBDIR
    wandb_dir.mkdir(parents=True, exist_ok=True)
    mode = logger["mode"]
    model, method = metrics.get("model"), metrics.get("method")
    with _environment({"WANDB_MODE": mode, "WANDB_DATA_DIR": str(wandb_dir / "data")}):
        run = wandb.init(
            project=logger["project"], entity=logger.get("entity"), group=logger.get("group"),
            tags=[*logger.get("tags", []), *(t for t in (model, method) if t)],
            name=_run_name(run_dir), job_type="prune", dir=str(run_dir), mode=mode,
            config=config,
            # logged after the run ended: system stats would describe the logger, not the run
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        try:
            run.summary.update(summary_from_record(metrics, run_dir))
            for episode, ks in enumerate(metrics.get("ks_history") or []):
                run.log({"policy/episode": episode, "policy/ks_greedy": ks})
            media: dict[str, Any] = {}
            per_layer = spectra.ks.tolist() if spectra is not None else metrics.get("ks_per_layer")
            if per_layer:
                media["tables/ks_per_layer"] = wandb.Table(
                    columns=["layer", "ks_dense_vs_pruned"],
                    data=[[layer, float(ks)] for layer, ks in enumerate(per_layer)])
            if spectra is not None:
                label = f"{method} {metrics.get('ratio_target')}"
                media["figures/spectrum_ecdf"] = wandb.Image(_png(ecdf_figure(
                    spectra.dense, {label: spectra.pruned}, ks={label: spectra.ks},
                    title=_run_name(run_dir))))
            if media:
                run.log(media)
            # a copy (wandb.save would symlink it), made last: yopo.results takes its presence
            # as the sign that the wandb run holds everything
            shutil.copy2(run_dir / METRICS_FILE, Path(run.dir) / METRICS_FILE)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()
        return run.id


def log_run(cfg: DictConfig | Mapping[str, Any], run_dir: str | os.PathLike,
            metrics: Mapping[str, Any], spectra: Spectra | None = None) -> str | None:
    """Log a finished run as cfg.logger says; returns the wandb run id (None: not logged).

    spectra defaults to the run folder's spectra.safetensors when one exists. logger=none and
    logger.mode=disabled log nothing. Never raises for a logging failure: it is reported on the
    log (error level) with the way to redo it.
    """
    run_dir = Path(run_dir)
    logger = cfg.get("logger")
    if logger is None or logger.get("backend") == "none" or logger.get("mode") == "disabled":
        return None
    try:
        check_logger(logger)
        config = (OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig)
                  else dict(cfg))
        if spectra is None and (run_dir / SPECTRA_FILE).exists():
            spectra = load_spectra(run_dir)
        run_id = _log_wandb(config["logger"], config, run_dir, metrics, spectra)
        log.info("wandb run %s logged (%s) into %s", run_id, config["logger"]["mode"],
                 run_dir / WANDB_SUBDIR)
        return run_id
    except Exception as err:  # the run's results are on disk: report, never lose or fail it
        bar = "!" * 78
        log.error("\n%s\nwandb logging FAILED for %s\n  %s: %s\nThe run's results are complete "
                  "in %s. Log it again with:\n  python -m yopo.tracking %s\n(logger=none skips "
                  "logging.)\n%s", bar, run_dir, type(err).__name__, err,
                  run_dir / METRICS_FILE, run_dir, bar)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yopo.tracking",
                                     description="Log finished run folders to wandb again.")
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--mode", choices=WANDB_MODES, help="override the run's logger.mode")
    args = parser.parse_args(argv)
    register_resolvers()
    failed = 0
    for run_dir in args.run_dirs:
        if not (run_dir / METRICS_FILE).is_file():
            print(f"{run_dir}: NOT logged: no {METRICS_FILE}, so not a complete run folder",
                  file=sys.stderr)
            failed += 1
            continue
        metrics = json.loads((run_dir / METRICS_FILE).read_text())
        cfg = OmegaConf.create(metrics.get("config") or {})
        if cfg.get("logger") is None or cfg.logger.get("backend") == "none":
            # a run made without a logger: log it with the default wandb settings
            cfg.logger = OmegaConf.load(CONF_DIR / "logger" / "wandb.yaml")
        if args.mode:
            cfg.logger.mode = args.mode
        run_id = log_run(cfg, run_dir, metrics)
        print(f"{run_dir}: {'wandb run ' + run_id if run_id else 'NOT logged'}")
        failed += run_id is None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
