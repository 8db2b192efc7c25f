"""Calibration text for the methods that read activations (activation, slicegpt).

Three sources, three data regimes (`data_regime`, recorded in every run):
  local  the held-out slice of the local WikiText-2 test text (`PruneContext.calibration_ids`,
         the last `data.calibration_tokens` tokens); perplexity is measured on the text before
         it. The default, and the only external text offline.
  hub    WikiText-2 *train* from the Hugging Face hub, what the SliceGPT and Wanda papers
         calibrate on, for users with network.
  self   text the dense model writes itself: `tokens // seq_len` sequences sampled from its start
         token at `generation_temperature` with `generation_seed`, cached per model (Williams,
         Chrysostomou and Aletras, "Self-calibration for language model quantization and
         pruning", NAACL 2025). No dataset is read: data-free in the paper's sense.
Either way the first `tokens` tokens are cut into sequences of `seq_len`. Methods that read no
text at all are "weights only".
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ConfigError
from ..io import atomic_file
from ..progress import progress
from .wikitext import hub_wikitext2_train_ids

if TYPE_CHECKING:  # the context type only: data does not depend on methods
    from ..methods.base import PruneContext

SOURCES = ("local", "hub", "self")
WEIGHTS_ONLY = "weights only"
DATA_REGIMES = {"local": "calibration text", "hub": "calibration text",
                "self": "self-generated text"}
# method options that only the `self` source reads: left out of a run's identity otherwise
GENERATION_OPTIONS = ("generation_temperature", "generation_seed")
SELF_TEXT_VERSION = 1  # bump when the sampling procedure changes: every cached text is redone


def data_regime(calibration_source: str | None) -> str:
    """"weights only", "calibration text" or "self-generated text" for a run's source."""
    return DATA_REGIMES.get(calibration_source, WEIGHTS_ONLY)


def generation_options_not_applying(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The generation options of a method's config when its source is not `self`."""
    return GENERATION_OPTIONS if options.get("calibration_source") != "self" else ()


def start_token_id(tokenizer) -> int:
    """The token generation starts from: BOS, else EOS (a document boundary)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ConfigError("the tokenizer has neither a BOS nor an EOS token to start self-generated "
                      "calibration text from; use method.calibration_source=local")


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap content hash of the weights (every 1009th value of each parameter, with names
    and shapes): two models that share a config name but not their weights get different
    self-generated texts."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, param in model.named_parameters():
            digest.update(f"{name}{tuple(param.shape)}".encode())
            digest.update(param.detach().flatten()[::1009].float().cpu().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def sample_sequences(model: nn.Module, start_id: int, n: int, seq_len: int, temperature: float,
                     seed: int, device: str) -> torch.Tensor:
    """n sequences of seq_len tokens [n, seq_len] (start token first), sampled at `temperature`
    from the full distribution (no top-k/top-p), with a KV cache; EOS does not stop a sequence
    (it is a document boundary, and the text goes on)."""
    generator = torch.Generator(device=device).manual_seed(int(seed))
    ids = torch.full((n, 1), start_id, dtype=torch.long, device=device)
    tokens = [ids]
    out = model(input_ids=ids, use_cache=True)
    for _ in progress(range(seq_len - 1), desc=f"self-generated calibration text ({n} sequences)"):
        probs = torch.softmax(out.logits[:, -1].float() / temperature, dim=-1)  # [n, vocab]
        ids = torch.multinomial(probs, 1, generator=generator)  # [n, 1]
        tokens.append(ids)
        out = model(input_ids=ids, cache=out.cache, use_cache=True)
    return torch.cat(tokens, dim=1).cpu()


@dataclass
class Calibration:
    source: str = "local"
    tokens: int = 32768
    seq_len: int = 2048
    temperature: float = 1.0  # self only
    generation_seed: int = 0  # self only: fixed, the text is the model's, not the run's

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ConfigError(f"unknown calibration_source '{self.source}' "
                              f"(use one of {', '.join(SOURCES)})")
        if not 1 <= self.seq_len <= self.tokens:
            raise ConfigError(f"calibration_seq_len={self.seq_len} must be at least 1 and at most "
                              f"calibration_tokens={self.tokens}")
        if self.source == "self" and not self.temperature > 0:
            raise ConfigError(f"generation_temperature={self.temperature} must be positive "
                              "(1.0 samples the model's own distribution)")
        self._self_text: dict[str, Any] = {}

    @property
    def data_regime(self) -> str:
        return data_regime(self.source)

    def batches(self, ctx: PruneContext, model: nn.Module | None = None) -> torch.Tensor:
        """Token ids [n, seq_len], n = tokens // seq_len. `model` (the dense model) writes the
        text when the source is `self`."""
        n = self.tokens // self.seq_len
        if self.source == "self":
            if model is None:
                raise ValueError("calibration_source=self needs the model that writes the text")
            return self.self_generated(model, ctx, n)
        if self.source == "local":
            ids = ctx.calibration_ids()
            where = f"the held-out slice (data.calibration_tokens={ctx.calibration_tokens})"
        else:
            ids = hub_wikitext2_train_ids(
                ctx.tokenizer, "Offline, use method.calibration_source=local (the held-out slice "
                "of local WikiText-2 test) or self (text the model writes itself)")
            where = "WikiText-2 train"
        if n * self.seq_len > ids.numel():
            raise ConfigError(f"calibration_tokens={self.tokens} is more than the {ids.numel()} "
                              f"tokens of {where}; lower method.calibration_tokens"
                              + (" or raise data.calibration_tokens" if self.source == "local"
                                 else ""))
        return ids[: n * self.seq_len].view(n, self.seq_len)

    def self_generated(self, model: nn.Module, ctx: PruneContext, n: int) -> torch.Tensor:
        """The model's own text [n, seq_len], read from <cache_dir>/self_text/ when this model
        (by weights) already wrote it with these settings; written atomically otherwise."""
        start_id = start_token_id(ctx.tokenizer)
        key = {"version": SELF_TEXT_VERSION, "model": ctx.model_name,
               "weights": weights_fingerprint(model), "sequences": n, "seq_len": self.seq_len,
               "temperature": self.temperature, "seed": self.generation_seed,
               "start_id": start_id}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = (Path(ctx.cache_dir) / "self_text" / f"{ctx.model_name}_{digest}.safetensors"
                if ctx.cache_dir else None)
        started = time.perf_counter()
        if path is not None and path.is_file():
            with safe_open(str(path), framework="pt") as f:
                ids = f.get_tensor("ids")
            cached = True
        else:
            was_training = model.training
            model.eval()
            ids = sample_sequences(model, start_id, n, self.seq_len, self.temperature,
                                   self.generation_seed, ctx.device)
            model.train(was_training)
            cached = False
            if path is not None:
                with atomic_file(path) as tmp:
                    save_file({"ids": ids.contiguous()}, str(tmp),
                              metadata={k: str(v) for k, v in key.items()})
        preview = ctx.tokenizer.decode(ids[0, 1:65]) if ctx.tokenizer is not None else ""
        self._self_text = {
            "generation_temperature": self.temperature, "generation_seed": self.generation_seed,
            "self_text_sha256": hashlib.sha256(ids.numpy().tobytes()).hexdigest(),
            "self_text_cached": cached,
            "self_text_seconds": time.perf_counter() - started,
            "self_text_distinct_tokens": int(ids.unique().numel()),
            "self_text_preview": preview}
        return ids

    def report(self) -> dict:
        return {"data_regime": self.data_regime, "calibration_source": self.source,
                "calibration_tokens": self.tokens // self.seq_len * self.seq_len,
                "calibration_seq_len": self.seq_len, **self._self_text}
