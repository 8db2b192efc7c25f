"""PruneNet's policies, which score FFN neurons from the FFN1 weights alone, and their on-disk
form: one `policy.safetensors` whose header carries the metadata as JSON, so saving is one
atomic write (weights and metadata can never disagree or be half there).

- RowPolicy (method=prunenet): one small MLP per row, shared across layers and ratios.
- FullMatrixPolicy (method=prunenet_reference): the authors' SparsityPredictor, tied to the
  model's hidden size d and FFN width m.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import YopoError
from ...io import atomic_file

POLICY_WEIGHTS = "policy.safetensors"
METADATA_KEY = "yopo_policy"  # the safetensors header entry holding the metadata JSON


class PolicyError(YopoError):
    """A policy file that cannot be used for this model (missing, corrupt, wrong shape)."""


class RowPolicy(nn.Module):
    """score_i = v . gelu(A x_i + a) + c for each row x_i [d] of a layer's FFN1 matrix [m, d].

    Rows are divided by the layer's RMS weight so that one policy serves layers of different
    scale while the relative row norms inside a layer stay visible to it.
    Parameters: d*h + 2h + 1 (h = policy_dim).
    """

    kind = "row_mlp"
    shape_keys = ("hidden_size", "policy_dim")  # what the metadata must give to rebuild it

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


class FullMatrixPolicy(nn.Module):
    """The authors' policy (SparsityPredictor in LCS2-IIITD/PruneNet), in our code.

    alpha = sigmoid((W A^T + a) v) [m] for a layer's FFN1 matrix W [m, d]: a Linear(d, m)
    applied to the whole matrix ([m, d] -> [m, m]) times a learned vector v [m, 1]. Keep
    probabilities are sigmoid(logit(u) + logit(alpha)) with fresh u ~ U(0, 1) [m] at every call
    (their "reparametrisation", in evaluation too). Parameters d*m + m + m; one policy serves
    every layer of one model, and only models with the same d and m.
    """

    kind = "full_matrix"
    shape_keys = ("hidden_size", "ffn_width")

    def __init__(self, hidden_size: int, ffn_width: int):
        super().__init__()
        self.hidden_size, self.ffn_width = hidden_size, ffn_width
        self.proj = nn.Linear(hidden_size, ffn_width)  # weight A [m, d], bias a [m]
        self.row_weights = nn.Parameter(torch.rand(ffn_width, 1))  # v [m, 1], U(0, 1) as theirs

    def alpha(self, ffn1: torch.Tensor) -> torch.Tensor:
        """ffn1 [m, d] -> alpha [m] in (0, 1)."""
        return torch.sigmoid(self.proj(ffn1) @ self.row_weights)[:, 0]

    def forward(self, ffn1: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """ffn1 [m, d] -> keep probabilities [m] under fresh uniform noise from `generator`."""
        alpha = self.alpha(ffn1)
        u = torch.rand(alpha.shape, generator=generator, device=alpha.device, dtype=alpha.dtype)
        tiny = torch.finfo(alpha.dtype).tiny  # u = 0 would give logit -inf (NaN beside alpha = 1)
        return torch.sigmoid(torch.logit(u.clamp(tiny, 1 - 1e-7)) + torch.logit(alpha))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


POLICY_KINDS = {cls.kind: cls for cls in (RowPolicy, FullMatrixPolicy)}


def save_policy(policy: nn.Module, folder: str | Path, metadata: dict[str, Any]) -> None:
    """`folder`/policy.safetensors: the weights, and in its header the policy's kind and shape,
    its parameter count and `metadata` (model, train ratio, seed, training history)."""
    meta = {"kind": policy.kind, **{key: getattr(policy, key) for key in policy.shape_keys},
            "num_parameters": policy.num_parameters(), **metadata}
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    with atomic_file(Path(folder) / POLICY_WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, default=str)})


def weights_file(path: str | Path) -> Path:
    """The policy file a run folder (or the file itself) names."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path / POLICY_WEIGHTS


def read_policy_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a saved policy (a run folder or its policy.safetensors), header only."""
    weights = weights_file(path)
    if not weights.is_file():
        raise PolicyError(f"policy file {weights} does not exist; pass policy=<run folder of a "
                          "prunenet or prunenet_reference run> or omit policy= to train one")
    try:
        with safe_open(str(weights), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
        if not isinstance(meta, dict):
            raise ValueError("the metadata is not a JSON object")
    except Exception as err:  # noqa: BLE001 - any parse failure means the same thing here
        raise PolicyError(f"policy at {weights} is corrupt or unreadable ({type(err).__name__}: "
                          f"{err}); retrain it by running without policy=") from err
    return meta


def load_policy(path: str | Path, kind: type[nn.Module], **shape: int
                ) -> tuple[nn.Module, dict[str, Any]]:
    """Load a saved policy of class `kind` for a model of the given shape (RowPolicy:
    hidden_size; FullMatrixPolicy: hidden_size and ffn_width)."""
    weights = weights_file(path)
    meta = read_policy_metadata(weights)
    if meta.get("kind") != kind.kind:
        raise PolicyError(f"policy at {weights} is a {meta.get('kind')!r} policy, not the "
                          f"{kind.kind!r} policy this method uses: reuse a policy of the same "
                          "method, or train one")
    missing = [key for key in kind.shape_keys if key not in meta]
    if missing:
        raise PolicyError(f"policy at {weights} lacks {', '.join(missing)} in its metadata "
                          "(written by another tool or version?): retrain it by running "
                          "without policy=")
    for key, value in shape.items():
        if meta[key] != value:
            what = key.replace("_", " ")
            raise PolicyError(f"policy at {weights} was trained for {what} {meta[key]} (model "
                              f"{meta.get('model')!r}), but this model has {what} {value}; "
                              f"a {kind.kind} policy transfers only between models of the same "
                              f"{' and '.join(k.replace('_', ' ') for k in shape)}: train one "
                              "for this model")
    policy = kind(*(int(meta[key]) for key in kind.shape_keys))
    try:
        policy.load_state_dict(load_file(str(weights)))
    except Exception as err:  # noqa: BLE001 - wrong keys or shapes: the file lies about itself
        raise PolicyError(f"policy at {weights} does not match its metadata ({err}); retrain it "
                          "by running without policy=") from err
    return policy, meta


def reuse_or_train(ctx, kind: type[nn.Module], shape: dict[str, int], episodes: int,
                   train: Callable[[], tuple[nn.Module, dict[str, Any]]]
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """The policy a run prunes with and its report entries: the saved one that ctx.policy
    (a PruneContext) names, on ctx.device, or a newly trained one (`train()` -> policy, report
    entries), saved to ctx.run_dir with the run's model, ratio, seed and training history."""
    if ctx.policy:
        policy, meta = load_policy(ctx.policy, kind, **shape)
        return policy.to(ctx.device), {"policy_source": str(ctx.policy),
                                       "policy_train_ratio": meta.get("train_ratio"),
                                       "policy_trained_on": meta.get("model"),
                                       "policy_train_seconds": 0.0}
    started = time.perf_counter()
    policy, info = train()
    seconds = time.perf_counter() - started
    if ctx.run_dir is not None:
        save_policy(policy, ctx.run_dir, {
            "model": ctx.model_name, "train_ratio": ctx.ratio, "seed": ctx.seed,
            "episodes": episodes, "train_seconds": seconds, **info})
    return policy, {"policy_source": "trained", "policy_train_ratio": ctx.ratio,
                    "policy_train_seconds": seconds, **info}
