"""Recovery fine-tuning (RFT) after pruning: LoRA adapters trained on a text, then merged.

`rft=lora` puts low-rank adapters (peft) on the pruned model's decoder-layer linears, trains them
with the causal-LM loss on random windows of a text, and merges them into the weights
(merge_and_unload): the result is again a plain transformers model of the pruned shape, saved and
reloaded like any other. `rft=none` (the default) leaves the model untouched. It needs only a
model and its tokenizer, so it follows every pruning method.

The text (`rft.text`):
  calibration  the held-out calibration slice of the local WikiText-2 test text
               (PruneContext.calibration_ids), never the part perplexity is measured on; offline.
  hub          WikiText-2 train from the Hugging Face hub (yopo.data.wikitext, the one hub
               loader), as the paper trains.
"""
from __future__ import annotations

import math
import time
from typing import Any, Mapping

import torch
from torch import nn

from .adapters import FFNAdapter, get_adapter
from .data.wikitext import hub_wikitext2_train_ids
from .errors import ConfigError
from .methods.base import PruneContext
from .progress import progress

TEXTS = ("calibration", "hub")
TARGET_SETS = ("all", "ffn")  # or a list of module-name suffixes


def enabled(rft_cfg: Mapping[str, Any] | None) -> bool:
    return rft_cfg is not None and rft_cfg["name"] != "none"


def check_config(rft_cfg: Mapping[str, Any]) -> None:
    """Reject bad values before anything is loaded or trained."""
    if not enabled(rft_cfg):
        return
    if rft_cfg["text"] not in TEXTS:
        raise ConfigError(f"rft.text={rft_cfg['text']} is unknown; use one of {', '.join(TEXTS)}")
    targets = rft_cfg["target_modules"]
    if isinstance(targets, str) and targets not in TARGET_SETS:
        raise ConfigError(f"rft.target_modules={targets} is unknown; use all, ffn or a list of "
                          "module-name suffixes, e.g. [q_proj,v_proj]")
    for key in ("rank", "seqlen", "samples", "batch_size"):
        if int(rft_cfg[key]) < 1:
            raise ConfigError(f"rft.{key}={rft_cfg[key]} must be a positive integer")
    if rft_cfg["steps"] is not None and int(rft_cfg["steps"]) < 1:
        raise ConfigError(f"rft.steps={rft_cfg['steps']} must be positive (or null: one pass)")
    micro = micro_batch_size(rft_cfg)
    if micro < 1 or int(rft_cfg["batch_size"]) % micro:
        raise ConfigError(f"rft.micro_batch_size={micro} must divide rft.batch_size="
                          f"{rft_cfg['batch_size']}")
    if not 0.0 <= float(rft_cfg["dropout"]) < 1.0:
        raise ConfigError(f"rft.dropout={rft_cfg['dropout']} must be in [0, 1)")


def micro_batch_size(rft_cfg: Mapping[str, Any]) -> int:
    """Sequences per forward/backward pass; gradients of batch_size // micro of them add up."""
    micro = rft_cfg["micro_batch_size"]
    return int(rft_cfg["batch_size"] if micro is None else micro)


# ---- what is trained ----------------------------------------------------------------------------
def decoder_linears(model: nn.Module, adapter: FFNAdapter) -> dict[str, nn.Linear]:
    """Every nn.Linear inside the decoder layers, by qualified name (the head stays frozen)."""
    layers = adapter.decoder_layers(model)
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return {f"{prefix}.{name}": module for name, module in layers.named_modules()
            if isinstance(module, nn.Linear)}


def target_module_names(model: nn.Module, adapter: FFNAdapter, targets) -> list[str]:
    """The qualified names of the linears LoRA adapts: `all` (attention and FFN), `ffn` (the
    adapter's FFN linears) or the decoder linears whose names end with one of the given
    suffixes. The family's module names come from the adapter, never from here."""
    linears = decoder_linears(model, adapter)
    if targets == "all":
        return list(linears)
    if targets == "ffn":
        ffn = {id(linear) for block in adapter.blocks(model)
               for linear in (*block.ffn_in, block.ffn_out)}
        return [name for name, module in linears.items() if id(module) in ffn]
    suffixes = [str(t) for t in targets]
    unmatched = [s for s in suffixes if not any(n == s or n.endswith("." + s) for n in linears)]
    if unmatched:
        known = sorted({n.rsplit(".", 1)[-1] for n in linears})
        raise ConfigError(f"rft.target_modules {unmatched} match no linear in the decoder layers "
                          f"of this model (its linears: {', '.join(known)}); or use all / ffn")
    return [n for n in linears if any(n == s or n.endswith("." + s) for s in suffixes)]


# ---- what it is trained on ----------------------------------------------------------------------
def training_ids(tokenizer, rft_cfg: Mapping[str, Any], ctx: PruneContext) -> torch.Tensor:
    """The token ids [N] of the configured text."""
    if rft_cfg["text"] == "calibration":
        if ctx.data_dir is None or ctx.calibration_tokens < 1:
            raise ConfigError("rft.text=calibration needs the data dir and "
                              "data.calibration_tokens > 0 (the held-out calibration slice)")
        return ctx.calibration_ids()
    return hub_wikitext2_train_ids(
        tokenizer, "Use rft.text=calibration (the local calibration slice) or run with network "
        "and HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unset")


def sample_windows(ids: torch.Tensor, seqlen: int, samples: int,
                   generator: torch.Generator) -> torch.Tensor:
    """`samples` windows [samples, seqlen] of the ids [N] at random starts (they may overlap:
    a short text is reused, as the paper's 8000 x 1024 tokens exceed WikiText-2 train)."""
    if ids.numel() < seqlen:
        raise ConfigError(f"rft: the text has {ids.numel()} tokens, fewer than rft.seqlen="
                          f"{seqlen}; lower rft.seqlen or raise data.calibration_tokens")
    starts = torch.randint(0, ids.numel() - seqlen + 1, (samples,), generator=generator)
    return torch.stack([ids[s:s + seqlen] for s in starts.tolist()])


# ---- training -----------------------------------------------------------------------------------
def attach_lora(model: nn.Module, rft_cfg: Mapping[str, Any]):
    """Wrap `model` in a peft LoRA model (in place: the adapters are injected into its linears).
    Adapter A matrices are drawn from the global RNG, seeded here by rft.seed."""
    from peft import LoraConfig, get_peft_model

    names = target_module_names(model, get_adapter(model), rft_cfg["target_modules"])
    torch.manual_seed(int(rft_cfg["seed"]))
    return get_peft_model(model, LoraConfig(
        r=int(rft_cfg["rank"]), lora_alpha=float(rft_cfg["alpha"]),
        lora_dropout=float(rft_cfg["dropout"]), target_modules=names, bias="none"))


def train_lora(peft_model, windows: torch.Tensor, rft_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """AdamW on the adapters over batches of `windows` [n, seqlen] (cycled when the steps ask
    for more than one pass), linear warmup then linear decay to 0, gradient clipping."""
    batch_size, micro = int(rft_cfg["batch_size"]), micro_batch_size(rft_cfg)
    steps = rft_cfg["steps"]
    steps = math.ceil(windows.shape[0] / batch_size) if steps is None else int(steps)
    warmup = int(rft_cfg["warmup_steps"])
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=float(rft_cfg["lr"]),
                                  weight_decay=float(rft_cfg["weight_decay"]))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
        (s + 1) / (warmup + 1), max(0.0, (steps - s) / max(1, steps - warmup))))
    device = next(peft_model.parameters()).device
    order = torch.arange(steps * batch_size) % windows.shape[0]  # cycle over the windows
    loss_curve = []
    peft_model.train()
    for step in progress(range(steps), desc="rft steps"):
        batch = windows[order[step * batch_size:(step + 1) * batch_size]].to(device)  # [b, seqlen]
        step_loss = 0.0
        for part in batch.split(micro):  # gradient accumulation over [micro, seqlen] parts
            loss = peft_model(input_ids=part, labels=part, use_cache=False).loss
            (loss * part.shape[0] / batch_size).backward()
            step_loss += loss.item() * part.shape[0] / batch_size
        torch.nn.utils.clip_grad_norm_(trainable, float(rft_cfg["max_grad_norm"]))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_curve.append(step_loss)
    peft_model.eval()
    return {"steps": steps, "loss_curve": loss_curve,
            "tokens_seen": steps * batch_size * int(windows.shape[1]),
            "trainable_params": sum(p.numel() for p in trainable)}


def finetune(model: nn.Module, tokenizer, rft_cfg: Mapping[str, Any] | None,
             ctx: PruneContext) -> dict[str, Any] | None:
    """Recovery fine-tuning of `model` in place, as `rft_cfg` (conf/rft/) says; returns the
    report for metrics.json, or None for rft=none (the model is not touched)."""
    if not enabled(rft_cfg):
        return None
    check_config(rft_cfg)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and int(rft_cfg["seqlen"]) > limit:
        raise ConfigError(f"rft.seqlen={rft_cfg['seqlen']} exceeds the model's {limit} "
                          f"positions; set rft.seqlen<={limit}")
    started = time.perf_counter()
    ids = training_ids(tokenizer, rft_cfg, ctx)
    windows = sample_windows(ids, int(rft_cfg["seqlen"]), int(rft_cfg["samples"]),
                             torch.Generator().manual_seed(int(rft_cfg["seed"])))
    requires_grad = [p.requires_grad for p in model.parameters()]
    peft_model = attach_lora(model, rft_cfg)
    report = train_lora(peft_model, windows, rft_cfg)
    merged = peft_model.merge_and_unload()  # the same object as `model`, adapters folded in
    assert merged is model
    for p, flag in zip(model.parameters(), requires_grad):  # peft froze the base weights
        p.requires_grad_(flag)
    model.eval()
    return {"setting": rft_cfg["name"], "text": rft_cfg["text"], "text_tokens": int(ids.numel()),
            "samples": int(windows.shape[0]), "seqlen": int(windows.shape[1]),
            "rank": int(rft_cfg["rank"]), "alpha": float(rft_cfg["alpha"]), **report,
            "seconds": time.perf_counter() - started}
