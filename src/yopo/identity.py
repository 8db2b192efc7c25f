"""A run's identity: everything that can change its result, hashed into a short id.

The run folder is `<runs_dir>/<model>/<method>/<slug>_<run_id>`: a readable slug (ratio, seed,
policy, RFT) and the first 12 hex digits of the SHA-256 of the identity. metrics.json records
both, and a sweep skips a run only when the folder holds a complete run with the same id, so two
configs never share a folder and a changed default (say `noise_power` in
conf/method/expected_activation.yaml) gives a new run instead of reporting the old one.

What identifies a run: the model config, the method and all its options, ratio, seed, round_to,
the evaluation, recovery fine-tuning, any other top-level key a future config adds, the
content hash of a reused policy, the calibration slice size, the data checksums and the device
kind (cpu / cuda: sampled masks, self-generated text and rounding differ; yopo.device). What
does not: where things lie (paths, data.dir, transfer.runs_dir), logging, the launcher, which
device of a kind and the device map, `skip_existing`, `save_model`. Options that cannot change this run's result are
left out and recorded as not used: the seed of a deterministic method, the policy-training
options when a policy is reused, options a method marks as runtime-only (batching,
worker counts), and options the method's configuration does not read (`options_not_applying`:
text-generation settings when the calibration text is not self-generated).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

IDENTITY_VERSION = 2  # bump when what is hashed changes: every run gets a new folder
# (2: the device kind is hashed)
RUN_ID_LENGTH = 12
METRICS_FILE = "metrics.json"  # a run folder's record, written last: it marks the run complete
EXAMPLES_FILE = "example_scores.json"  # each zero-shot example's score: {pruned, dense, before_rft}
# top-level keys that say where or how a run happens, not what it computes
NOT_IDENTIFYING = ("hydra", "paths", "logger", "launcher", "skip_existing", "save_model",
                   "transfer", "policy")


@dataclass(frozen=True)
class RunIdentity:
    fields: dict[str, Any]  # what is hashed
    run_id: str  # the first RUN_ID_LENGTH hex digits of its SHA-256
    slug: str  # the readable part of the folder name
    not_used: list[str] = field(default_factory=list)  # config keys that cannot apply

    @property
    def folder_name(self) -> str:
        return f"{self.slug}_{self.run_id}"


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def method_class(method_cfg: Mapping[str, Any]):
    target = method_cfg.get("_target_")
    try:
        return get_class(str(target))
    except Exception as err:  # noqa: BLE001 - Hydra raises several types for a bad target
        raise ConfigError(f"method '{method_cfg.get('name')}' names _target_ {target!r}, which "
                          f"does not import ({err}); fix conf/method/<name>.yaml") from err


def policy_fingerprint(policy: Path) -> dict[str, str]:
    """The reused policy's weights by content (a retrained policy in the same folder is another
    policy); the resolved path where there is no file yet (the run then fails on it)."""
    from .io import file_sha256
    from .methods.prunenet.policy import weights_file

    weights = weights_file(policy)
    if weights.is_file():
        return {"weights_sha256": file_sha256(weights)}
    return {"missing": str(policy.resolve())}


def identify(cfg: DictConfig | Mapping[str, Any]) -> RunIdentity:
    """The identity of the run that `cfg` (a composed run config, with or without its hydra
    node) describes."""
    from .data import CHECKSUMS
    from .device import device_kind
    from .rft import enabled as rft_enabled

    cls = method_class(cfg["method"])
    method = dict(_container(cfg["method"]))
    not_used = [f"method.{key}" for key in (*cls.runtime_options, *cls.options_not_applying(method))
                if key in method]
    try:
        policy = reused_policy(cfg)
        fingerprint = policy_fingerprint(policy) if policy else None
    except ConfigError as err:  # the run fails on it with this message; name it meanwhile
        fingerprint = {"unresolved": str(err)}
    if fingerprint:
        not_used += [f"method.{key}" for key in cls.training_options if key in method]
    for key in not_used:
        method.pop(key.removeprefix("method."), None)
    seed_used = cls.uses_seed or rft_enabled(cfg["rft"])
    if not seed_used:
        not_used.append("seed")

    fields: dict[str, Any] = {"identity_version": IDENTITY_VERSION}
    for key in sorted(k for k in cfg.keys() if k not in NOT_IDENTIFYING):
        fields[key] = _container(cfg[key])
    fields["method"] = method
    fields["model"] = {k: v for k, v in fields["model"].items() if k != "device_map"}
    fields["device"] = device_kind(cfg["device"], cfg["model"].get("device_map"))
    fields["seed"] = int(cfg["seed"]) if seed_used else None
    fields["ratio"] = float(cfg["ratio"])
    data = {k: v for k, v in dict(fields.get("data") or {}).items() if k != "dir"}
    fields["data"] = {**data, "checksums": dict(sorted(CHECKSUMS.items()))}
    if fingerprint:
        fields["policy"] = fingerprint

    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    slug = f"ratio{float(cfg['ratio']):g}"
    if seed_used:
        slug += f"_seed{int(cfg['seed'])}"
    if fingerprint:
        slug += "_policy"
    rft_name = str(fields.get("rft", {}).get("name", "none"))
    if rft_name != "none":
        slug += f"_rft-{rft_name}"
    return RunIdentity(fields, digest.hexdigest()[:RUN_ID_LENGTH], slug, not_used)


def run_folder(*, _root_: DictConfig) -> str:
    """The `${run_folder:}` resolver of conf/config.yaml: <slug>_<run_id> of the run."""
    return identify(_root_).folder_name


def find_trained_policy(folder: str | Path, train_ratio: float, seed: int) -> Path:
    """The one complete run under `folder` (<runs_dir>/<model>/<method>) that trained a policy
    at `train_ratio` with `seed`: what conf/transfer/from_<r>.yaml reuses."""
    from .methods.prunenet.policy import POLICY_WEIGHTS, PolicyError, read_policy_metadata

    root = Path(str(folder))
    found = []
    for weights in sorted(root.glob(f"*/{POLICY_WEIGHTS}")):
        try:
            meta = read_policy_metadata(weights)
        except PolicyError:
            continue
        if (meta.get("train_ratio") == float(train_ratio) and meta.get("seed") == int(seed)
                and (weights.parent / METRICS_FILE).is_file()):
            found.append(weights.parent)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"no complete run under {root} trained a policy at ratio "
                          f"{float(train_ratio):g} with seed {seed}: train it first "
                          f"(python src/run.py ratio={float(train_ratio):g} seed={seed} ...) or "
                          "pass policy=<run folder>")
    raise ConfigError(f"{len(found)} runs under {root} trained a policy at ratio "
                      f"{float(train_ratio):g} with seed {seed} ("
                      + ", ".join(p.name for p in found) + "): pass policy=<one of them>")


def reused_policy(cfg: DictConfig | Mapping[str, Any]) -> Path | None:
    """The saved policy a run reuses: `policy=<run folder>`, or the one `transfer=from_<r>`
    points to (conf/transfer/); None when the run trains its own."""
    policy, transfer = cfg.get("policy"), cfg.get("transfer")
    if policy and transfer:
        raise ConfigError(f"both policy={policy} and transfer= name a policy to reuse: "
                          "drop one of them")
    if policy:
        return Path(str(policy))
    if transfer:
        return find_trained_policy(Path(str(transfer["runs_dir"])) / cfg["model"]["name"]
                                   / cfg["method"]["name"], transfer["train_ratio"], cfg["seed"])
    return None
