"""One run: load -> prune -> save -> evaluate -> record. `src/run.py` is its Hydra front end."""
from __future__ import annotations

import copy
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .adapters import get_adapter
from .config import REPO_ROOT
from . import rft
from .eval import (check_eval, dense_scores, evaluate_run, format_eval, needs_dense_copy,
                   score_model)
from .errors import ConfigError
from .identity import EXAMPLES_FILE, METRICS_FILE, RunIdentity, identify, reused_policy
from .io import atomic_dir, write_json
from .methods import build_method
from .methods.base import NeuronSelectionMethod, PruneContext, check_ratio
from .data.calibration import WEIGHTS_ONLY
from .device import device_record, resolve_device
from .eval.throughput import ideal_speedup
from .models import count_parameters, load_model
from .modeling.fused_mlp import apply_fuse_option, check_fuse_option
from .spectra import ffn1_spectra, save_spectra
from .tracking import check_logger, log_run

MODEL_DIR = "pruned_model"


def git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for pkg in ("yopo", "torch", "transformers", "lm_eval", "hydra-core", "wandb"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return versions


def save_checkpoint(model, tokenizer, folder: Path) -> None:
    """A standard transformers checkpoint: AutoModelForCausalLM.from_pretrained reloads it."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def existing_run(run_dir: Path, identity: RunIdentity, save_model: bool) -> str | None:
    """The run_id of the complete run in run_dir if it is this config's run (and holds its
    checkpoint when one is asked for); None if there is none or it is incomplete. A folder that
    holds another config's run is never reused."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError):
        found = "unreadable"
    if found != identity.run_id:
        raise ConfigError(f"{run_dir} holds a run with run_id {found}, not this config's "
                          f"{identity.run_id} (another config, or a yopo before run ids): "
                          "move or delete that folder, or set hydra.run.dir elsewhere")
    if save_model and not (run_dir / MODEL_DIR).is_dir():
        return None  # complete, but made with save_model=false: redo it with the checkpoint
    return found


def policy_to_reuse(cfg: DictConfig, method) -> Path | None:
    """The saved policy this run reuses (policy= or transfer=), checked against the method."""
    if (cfg.get("policy") or cfg.get("transfer")) and not method.takes_policy:
        raise ConfigError(f"a policy to reuse is set (policy= or transfer=), but method="
                          f"{cfg.method.name} takes no policy (only prunenet and "
                          "prunenet_reference do): drop it")
    return reused_policy(cfg)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Execute the run described by `cfg`, writing artefacts and metrics.json into run_dir."""
    started = time.perf_counter()
    ratio = check_ratio(cfg.ratio)  # fail before loading anything
    identity = identify(cfg)
    method = build_method(cfg.method)
    policy = policy_to_reuse(cfg, method)
    device = resolve_device(cfg.device)
    check_eval(cfg)
    check_fuse_option(cfg.inference.fuse_gate_up)
    rft.check_config(cfg.rft)
    check_logger(cfg.get("logger"))
    run_dir.mkdir(parents=True, exist_ok=True)

    model, tokenizer = load_model(cfg.model, Path(cfg.paths.cache_dir) / "models")
    if not cfg.model.get("device_map"):
        model.to(device)
    adapter = get_adapter(model)
    params_dense = count_parameters(model)
    # FFN1 singular values [L, d] before pruning, for methods that keep FFN1's columns (SliceGPT
    # rotates and slices the hidden side, so its FFN1 spectra do not compare with the dense ones)
    keeps_ffn1_space = isinstance(method, NeuronSelectionMethod)
    spectra_dense = ffn1_spectra(model, adapter) if keeps_ffn1_space else None
    # Dense scores before pruning (cached per model and eval config: a sweep computes them once);
    # a dense copy only when the speed of both is compared in this process.
    dense = dense_scores(model, tokenizer, cfg)
    dense_model = copy.deepcopy(model) if needs_dense_copy(cfg.eval) else None

    prune_started = time.perf_counter()
    ctx = PruneContext(
        ratio=ratio, seed=int(cfg.seed), round_to=int(cfg.round_to), device=device,
        run_dir=run_dir, model_name=cfg.model.name, tokenizer=tokenizer,
        data_dir=Path(cfg.data.dir), calibration_tokens=int(cfg.data.calibration_tokens),
        policy=policy, cache_dir=Path(cfg.paths.cache_dir))
    report = method.prune(model, adapter, ctx)
    prune_seconds = time.perf_counter() - prune_started
    params_pruned = count_parameters(model)
    spectra = (save_spectra(run_dir, spectra_dense, ffn1_spectra(model, adapter))
               if keeps_ffn1_space else None)

    before_rft = rft_report = None
    if rft.enabled(cfg.rft):
        # RFT keeps every shape: throughput and memory are measured once, after it; the scores
        # before it are kept so the gain is one subtraction.
        before_rft = score_model(model, tokenizer, cfg)
        rft_report = rft.finetune(model, tokenizer, cfg.rft, ctx)

    if cfg.save_model:
        save_checkpoint(method.checkpoint_model(model), tokenizer, run_dir / MODEL_DIR)
    # Inference layout for evaluation and speed (the checkpoint above stays standard): the
    # ideal speedup is read from the layout the adapter knows, before fusing.
    ideal = ideal_speedup(dense_model, model, adapter) if dense_model is not None else None
    fused = apply_fuse_option(cfg.inference.fuse_gate_up, [model, dense_model])
    evaluation = evaluate_run(cfg, model, tokenizer, adapter, dense, dense_model, ideal)
    del dense_model
    # each zero-shot example's score, for paired comparisons (results.paired), beside the record
    examples = {"pruned": evaluation.pop("examples"),
                "dense": (dense or {}).get("examples"),
                "before_rft": (before_rft or {}).pop("examples", None)}
    evaluation["dense"] = {k: v for k, v in (dense or {}).items() if k != "examples"} or None

    metrics: dict[str, Any] = {
        "run_id": identity.run_id,
        "model": cfg.model.name, "method": cfg.method.name, "seed": int(cfg.seed),
        "ratio_target": ratio, "ratio_achieved": report.pop("ratio_achieved", None),
        "params_dense": params_dense, "params_pruned": params_pruned,
        "params_removed_fraction": 1.0 - params_pruned / params_dense,
        "compression_seconds": prune_seconds,
        "data_regime": report.pop("data_regime", WEIGHTS_ONLY),
        **report,
        **evaluation,
        "before_rft": before_rft, "rft": rft_report,
        "inference": {"fuse_gate_up": cfg.inference.fuse_gate_up, "fused_mlps": fused},
        "total_seconds": time.perf_counter() - started,
        **device_record(device, next(model.parameters()).dtype),
        "git_commit": git_commit(), "versions": package_versions(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "identity": identity.fields, "options_not_used": identity.not_used,
    }
    if any(examples.values()):
        write_json(run_dir / EXAMPLES_FILE, examples, indent=None)
    write_json(run_dir / METRICS_FILE, metrics)  # written last: it marks the run complete
    log_run(cfg, run_dir, metrics, spectra)  # after it: a logging failure loses no result
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    lines = [f"model {metrics['model']}  method {metrics['method']}  ratio {metrics['ratio_target']}"
             f" (achieved {metrics['ratio_achieved']:.4f} of the "
             f"{'hidden size' if metrics.get('ratio_semantics') == 'hidden_dim' else 'FFN width'})",
             f"parameters {metrics['params_dense']:,} -> {metrics['params_pruned']:,} "
             f"({100 * metrics['params_removed_fraction']:.1f}% removed)"]
    if "ks_mean_dense_vs_pruned" in metrics:
        lines.append(f"KS(dense, pruned) mean over layers {metrics['ks_mean_dense_vs_pruned']:.4f}"
                     f"; policy training {metrics.get('policy_train_seconds', 0):.1f} s")
    if metrics.get("rft"):
        r = metrics["rft"]
        lines.append(f"recovery fine-tuning {r['setting']}: {r['steps']} steps, {r['tokens_seen']:,}"
                     f" tokens, {r['seconds']:.0f} s, loss {r['loss_curve'][0]:.3f} -> "
                     f"{r['loss_curve'][-1]:.3f} (scores before it: metrics.json before_rft)")
    lines.extend(format_eval(metrics))
    lines.append(f"total {metrics['total_seconds']:.1f} s")
    return "\n".join(lines)
