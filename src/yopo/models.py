"""Loading models: the embedded SmolLM2 GGUF, hub checkpoints, and tiny random models.

Every model config (conf/model/*.yaml) names a `source`:
  gguf_package  a GGUF file shipped inside a pip package (the embedded SmolLM2), dequantised
                once into a cached safetensors folder that later loads in about a second;
  hub           a Hugging Face hub id (or a local folder in `path`), for users with hub access;
  random        a randomly initialised model built from a transformers config class, for tests
                of families whose weights cannot be downloaded here.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel,
                          PreTrainedTokenizerBase)

from .data import hub_offline
from .errors import ConfigError, YopoError
from .io import atomic_dir, atomic_file, file_sha256


class ModelUnavailableError(YopoError):
    """The model's weights cannot be reached (no hub access, package not installed)."""


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}' (use one of {', '.join(DTYPES)})")
    return DTYPES[name]


def _package_folders(package: str, setup: str) -> list[Path]:
    """Where an installed (never imported) package's files lie."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"package '{package}' with the model's weights is not "
                                    f"installed; run `{setup}`")
    return [Path(loc) for loc in spec.submodule_search_locations]


def find_packaged_gguf(model_cfg: Mapping[str, Any], work_dir: str | os.PathLike) -> Path:
    """The model's GGUF file: the .gguf inside `package`, or, where the config lists `chunks`
    (packages each holding one part), their concatenation in order, written once into
    `work_dir`. Checked against `sha256` where the config gives one."""
    setup = model_cfg.get("setup", "make setup")
    chunks = model_cfg.get("chunks")
    if not chunks:
        folders = _package_folders(model_cfg["package"], setup)
        files = sorted(p for folder in folders for p in folder.rglob("*.gguf"))
        if not files:
            raise ModelUnavailableError(f"package '{model_cfg['package']}' contains no .gguf file")
        gguf = files[0]
    else:
        gguf = Path(work_dir) / model_cfg["gguf_file"]
        if not gguf.exists():
            parts = []
            for chunk in chunks:
                found = [p for folder in _package_folders(chunk["package"], setup)
                         for p in folder.rglob(chunk["file"])]
                if not found:
                    raise ModelUnavailableError(f"package '{chunk['package']}' lacks "
                                                f"{chunk['file']}; reinstall it with `{setup}`")
                parts.append(found[0])
            with atomic_file(gguf) as tmp, open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 24)
    expected = model_cfg.get("sha256")
    if expected and (actual := file_sha256(gguf)) != expected:
        raise ModelUnavailableError(f"{gguf} has sha256 {actual}, not {expected}: "
                                    f"a damaged or different download; delete it and rerun `{setup}`")
    return gguf


def prepare_packaged_model(model_cfg: Mapping[str, Any], cache_dir: str | os.PathLike) -> Path:
    """Dequantise the model's packaged GGUF once into `cache_dir` (safetensors + tokenizer);
    reuse it."""
    target = Path(cache_dir)
    if (target / "config.json").exists():
        return target
    from transformers import GgufConfig  # imported late: only this path needs gguf

    gguf = find_packaged_gguf(model_cfg, target.parent)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
        quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level tokenizer (256 bytes + <|endoftext|>, vocab 257) built in code, for the tiny
    random models: no file, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"eos_token": eos, "bos_token": eos, "pad_token": eos})
    return fast


def _from_pretrained(location: str, dtype: torch.dtype, device_map: Any, what: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, device_map=device_map)
    except OSError as err:  # hub errors (offline, gated, unknown id) subclass OSError
        hint = ("HF_HUB_OFFLINE is set, so the hub is not contacted" if hub_offline("HF_HUB_OFFLINE")
                else "the Hugging Face hub is unreachable or the id is wrong/gated")
        raise ModelUnavailableError(
            f"cannot load {what} from '{location}': {hint}. Download it on a machine with hub "
            f"access (`huggingface-cli download {location}`) or point model.path at a local "
            f"checkpoint folder. ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return model, tokenizer


def load_model(model_cfg: Mapping[str, Any], cache_dir: str | os.PathLike
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) as the model config says, in eval mode."""
    source = model_cfg["source"]
    dtype = _dtype(model_cfg.get("dtype", "float32"))
    if source == "gguf_package":
        folder = prepare_packaged_model(model_cfg, Path(cache_dir) / model_cfg["name"])
        model, tokenizer = _from_pretrained(str(folder), dtype, None, model_cfg["name"])
    elif source == "hub":
        location = model_cfg.get("path") or model_cfg["hub_id"]
        model, tokenizer = _from_pretrained(location, dtype, model_cfg.get("device_map"),
                                            model_cfg["name"])
    elif source == "random":
        torch.manual_seed(int(model_cfg.get("init_seed", 0)))
        config = AutoConfig.for_model(model_cfg["model_type"], **dict(model_cfg["config"]))
        # built where it will run: initialising 7B parameters on a CPU takes minutes
        init_device = model_cfg.get("init_device") or "cpu"
        if init_device == "auto":
            init_device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(init_device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        tokenizer = byte_tokenizer()
    else:
        raise ConfigError(f"unknown model source '{source}' (use gguf_package, hub or random)")
    return model.eval(), tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
