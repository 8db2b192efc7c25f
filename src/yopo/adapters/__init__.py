"""Adapter registry: the one place a model family is registered. Adding a family = one file
under yopo/adapters/ plus one line in ADAPTERS."""
from torch import nn

from ..errors import ConfigError

from .base import FFNAdapter, FFNBlock
from .gemma import GemmaAdapter
from .llama import LlamaAdapter
from .opt import OPTAdapter
from .phi import PhiAdapter

ADAPTERS: tuple[type[FFNAdapter], ...] = (LlamaAdapter, GemmaAdapter, PhiAdapter, OPTAdapter)


def get_adapter(model: nn.Module) -> FFNAdapter:
    model_type = model.config.model_type
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter()
    known = sorted(t for a in ADAPTERS for t in a.model_types)
    raise ConfigError(f"no FFN adapter for model_type '{model_type}' (known: {', '.join(known)}); "
                     "add one file under src/yopo/adapters/ and register it in ADAPTERS")


__all__ = ["ADAPTERS", "FFNAdapter", "FFNBlock", "get_adapter"]
