"""What may share a table cell. A cell combines only runs of one configuration (seeds aside),
scored under one evaluation protocol, and (for speed, memory and time) on one kind of machine:

- the **variant** of a run is its identity less the seed (`variant_id`); its readable label
  names only the options in which it differs from the other variants of its method in the
  frame (`expected_activation[noise_var=0.05]`);
- the **protocol** of a score is everything that changes it: for zero-shot accuracy the data
  source, tasks, examples per task and dtype; for perplexity the text, sequence length, chunks
  and the calibration hold-out that decides where the evaluation text starts;
- the **hardware** of a run is its device kind, device name and thread count.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

import pandas as pd

#: identity keys a table never labels a variant by: the seed (a cell's runs differ in it) and
#: the keys tables show as rows or columns of their own (model, ratio, evaluation protocol)
UNLABELLED = ("seed", "ratio", "eval", "model.name")
#: a reused PruneNet policy's content hash depends on the seed it was trained with, like the
#: seed itself: the variant only says that a policy was reused
REUSED_POLICY = "reused"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": leaf}; lists become JSON text. A variant must read the same
    from a run folder and from its wandb summary, which drops None leaves and nests keys at
    "/" ("wikitext2/wiki.test.raw"): None leaves are dropped and "/" in a key is a level."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{str(key).replace('/', '.')}."))
        return out
    if value is None:
        return {}
    key = prefix.removesuffix(".")
    return {key: json.dumps(value, sort_keys=True) if isinstance(value, (list, tuple)) else value}


def variant_options(identity: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The identity a run's metrics.json records, less its seed, flattened ("method.gamma")."""
    if not isinstance(identity, Mapping) or not identity:
        return None
    fields = {k: v for k, v in identity.items() if k != "seed"}
    if fields.get("policy"):
        fields["policy"] = REUSED_POLICY
    return _flatten(fields)


def variant_id(options: Mapping[str, Any] | None) -> str | None:
    """12 hex digits of the SHA-256 of the variant's options (None without an identity)."""
    if options is None:
        return None
    text = json.dumps(dict(options), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _is_labelled(key: str, ignore: Iterable[str] = ()) -> bool:
    return not any(key == k or key.startswith(k + ".") for k in (*UNLABELLED, *ignore))


def _shown(key: str, value: Any) -> str:
    name = key.removeprefix("method.")
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def variant_labels(method: Iterable[str], model: Iterable[str], options: Iterable[Any],
                   not_used: Iterable[Any], ids: Iterable[str | None],
                   fallback: Iterable[str | None], ignore: Iterable[str] = ()) -> list[str]:
    """One readable label per run: `<method>` when its method has one variant in the frame,
    else `<method>[key=value, ...]` naming the options in which the method's variants of one
    model differ (keys of UNLABELLED aside; a group whose `name` differs, such as `rft`, is
    named by it alone). An option a run did not use (its record's `options_not_used`: the
    training options of a reused policy, say) tells it from no other variant; an option
    absent for another reason (an option added later) does. A run without a recorded identity
    is labelled by its run id (`<method>[run <id>]`): nothing says which other runs share its
    configuration. Keys under `ignore` are not told apart (a table that sets trained and
    reused policies side by side ignores `policy`).
    """
    ignore = tuple(ignore)

    def parsed(value: Any, empty: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else (value or empty)

    rows = [(name, model_name, parsed(opts, {}), set(parsed(unused, [])), vid, run)
            for name, model_name, opts, unused, vid, run
            in zip(method, model, options, not_used, ids, fallback)]
    differing: dict[str, set[str]] = {}
    for name in {r[0] for r in rows}:
        keys: set[str] = set()
        for model_name in {r[1] for r in rows if r[0] == name}:
            variants = {r[4]: (r[2], r[3]) for r in rows if r[0] == name and r[1] == model_name
                        and r[4] is not None}
            if len(variants) < 2:
                continue
            all_keys = set().union(*(flat for flat, _ in variants.values()))
            for key in all_keys:
                values = {json.dumps(flat.get(key), default=str)
                          for flat, unused in variants.values() if key not in unused}
                if _is_labelled(key, ignore) and len(values) > 1:
                    keys.add(key)
        # a group named by its `name` that differs (rft=lora) is shown by that name alone
        named = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".name")}
        differing[name] = {k for k in keys
                           if not any(k.startswith(g + ".") and not k.endswith(".name")
                                      for g in named)}
    labels = []
    for name, _, flat, _, vid, run in rows:
        if vid is None:
            labels.append(f"{name}[run {run}]")
            continue
        shown = [_shown(k.removesuffix(".name"), flat[k]) for k in sorted(differing[name])
                 if k in flat]
        labels.append(f"{name}[{', '.join(shown)}]" if shown else name)
    return labels


def run_key(runs: pd.DataFrame) -> pd.Series:
    """What makes two rows one run: its run id, or its folder where no id was recorded."""
    return runs["run_id"].fillna(runs["run_dir"])


def label_variants(runs: pd.DataFrame, ignore: Iterable[str] = ()) -> list[str]:
    """`variant_labels` of the loader's frame (one label per row)."""
    return variant_labels(runs["method"], runs["model"], runs["variant_options"],
                          runs["options_not_used"], runs["variant_id"], run_key(runs), ignore)


# ---- protocols ------------------------------------------------------------------------------
def zeroshot_protocol(zeroshot: Any) -> str | None:
    """"5 tasks (local), first 200 per task" / "... full sets"; "(bfloat16)" when not fp32.
    None when the run has no zero-shot score."""
    if not isinstance(zeroshot, Mapping):
        return None
    tasks = [k for k, v in zeroshot.items() if isinstance(v, Mapping)]
    if not tasks:
        return None
    limit = zeroshot.get("limit")
    label = (f"{len(tasks)} tasks ({zeroshot.get('source') or 'local'}), "
             + ("full sets" if limit is None else f"first {float(limit):g} per task"))
    dtype = zeroshot.get("dtype") or "float32"
    return label + ("" if dtype == "float32" else f" ({dtype})")


def perplexity_protocol(protocol: Any) -> str | None:
    """"evaluation text, 16 x 2048 (32768 held out)": which WikiText-2 text, how it was cut.
    None when the run has no perplexity."""
    if not isinstance(protocol, Mapping) or protocol.get("seqlen") is None:
        return None
    return (f"{protocol.get('text') or 'evaluation'} text, {protocol.get('chunks')} x "
            f"{protocol.get('seqlen')} ({protocol.get('calibration_tokens')} held out)")


def hardware(device: Any, name: Any, threads: Any) -> str | None:
    """"cpu: AMD EPYC, 2 threads"; the kind alone for runs that did not record the rest."""
    if device is None or (isinstance(device, float) and pd.isna(device)):
        return None
    kind = str(device).split(":")[0]
    if name is None or (isinstance(name, float) and pd.isna(name)):
        return f"{kind} (name not recorded)"
    return f"{kind}: {name}" + ("" if threads is None or pd.isna(threads)
                                else f", {int(threads)} threads")
