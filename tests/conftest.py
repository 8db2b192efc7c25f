"""Tests never touch the network: the hub is offline, wandb writes offline run folders."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from yopo.adapters import get_adapter  # noqa: E402
from yopo.config import compose  # noqa: E402
from yopo.models import load_model  # noqa: E402

TINY_MODELS = ("tiny_llama", "tiny_phi", "tiny_opt")


def load_tiny(name: str):
    cfg = compose([f"model={name}"])
    model, tokenizer = load_model(cfg.model, cfg.paths.cache_dir)
    return model, tokenizer


@pytest.fixture(params=TINY_MODELS)
def tiny(request):
    """(name, model, tokenizer, adapter) for each family's tiny random model."""
    model, tokenizer = load_tiny(request.param)
    return request.param, model, tokenizer, get_adapter(model)


@pytest.fixture
def token_batch():
    """[2, 24] token ids inside the tiny models' 257-token vocabulary."""
    return torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture
def clone():
    return copy.deepcopy
