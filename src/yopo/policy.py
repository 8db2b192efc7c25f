"""The PruneNet policy: one small network, shared across layers, that scores FFN neurons from
the FFN1 weights alone, and its on-disk form (safetensors + JSON metadata)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import YopoError
from .io import atomic_file, write_json

POLICY_WEIGHTS = "policy.safetensors"
POLICY_META = "policy.json"


class PolicyError(YopoError):
    """A policy file that cannot be used for this model (missing, corrupt, wrong shape)."""


class RowPolicy(nn.Module):
    """score_i = v . gelu(A x_i + a) + c for each row x_i [d] of a layer's FFN1 matrix [m, d].

    Rows are divided by the layer's RMS weight so that one policy serves layers of different
    scale while the relative row norms inside a layer stay visible to it.
    Parameters: d*h + 2h + 1 (h = policy_dim).
    """

    def __init__(self, hidden_size: int, policy_dim: int = 64):
        super().__init__()
        self.hidden_size = hidden_size
        self.policy_dim = policy_dim
        self.proj = nn.Linear(hidden_size, policy_dim)
        self.head = nn.Linear(policy_dim, 1)

    def forward(self, ffn1: torch.Tensor) -> torch.Tensor:
        """ffn1 [..., m, d] -> scores (logits) [..., m]."""
        scale = ffn1.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
        return self.head(torch.nn.functional.gelu(self.proj(ffn1 / scale))).squeeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_policy(policy: RowPolicy, folder: str | Path, metadata: dict[str, Any]) -> None:
    folder = Path(folder)
    meta = {"hidden_size": policy.hidden_size, "policy_dim": policy.policy_dim,
            "num_parameters": policy.num_parameters(), **metadata}
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    with atomic_file(folder / POLICY_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"yopo_policy": "1"})
    write_json(folder / POLICY_META, meta)


def load_policy(path: str | Path, hidden_size: int) -> tuple[RowPolicy, dict[str, Any]]:
    """Load a saved policy (a run folder or its policy.safetensors) for a model of `hidden_size`."""
    path = Path(path)
    folder = path.parent if path.suffix == ".safetensors" else path
    weights, meta_file = folder / POLICY_WEIGHTS, folder / POLICY_META
    for f in (weights, meta_file):
        if not f.is_file():
            raise PolicyError(f"policy file {f} does not exist; pass policy=<run folder of a "
                              "prunenet run> or omit policy= to train a new one")
    try:
        meta = json.loads(meta_file.read_text())
        state = load_file(str(weights))
    except Exception as err:  # noqa: BLE001 - any parse failure means the same thing here
        raise PolicyError(f"policy at {folder} is corrupt or unreadable ({type(err).__name__}: "
                          f"{err}); retrain it by running without policy=") from err
    if meta.get("hidden_size") != hidden_size:
        raise PolicyError(f"policy at {folder} was trained for hidden size "
                          f"{meta.get('hidden_size')} (model {meta.get('model')!r}), but this "
                          f"model has hidden size {hidden_size}; a policy transfers only between "
                          "models of the same hidden size: train one for this model")
    policy = RowPolicy(hidden_size, int(meta["policy_dim"]))
    try:
        policy.load_state_dict(state)
    except RuntimeError as err:
        raise PolicyError(f"policy at {folder} does not match its metadata: {err}") from err
    return policy, meta
