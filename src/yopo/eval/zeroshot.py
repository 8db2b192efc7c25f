"""Zero-shot accuracy with lm-eval on the in-memory model: the paper's five tasks.

`source=local` (default) reads the benchmark files of the data dir through the task YAMLs in
yopo/eval/tasks/: each includes lm-eval's own config of the task and swaps only the data source, so
prompts, choices and scoring are lm-eval's. Those YAMLs say `include: lm_eval_tasks/<task>/...`;
for each evaluation they are copied into a temporary folder beside a link `lm_eval_tasks` to the
installed lm-eval's task folder, which makes the include resolve to whatever lm-eval is installed
without a path in the repository. The data dir reaches the loaders (yopo.eval.tasks.local_data)
through the TaskManager's metadata, so one set of YAMLs serves any data dir.
`source=hub` runs lm-eval's built-in tasks unchanged (needs the Hugging Face hub).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..data import DataError, hub_offline
from ..errors import ConfigError
from ..models import DTYPES
from ..paper import TASK_METRICS

LOCAL_PREFIX = "yopo_"  # local task names: yopo_piqa, ... (never shadow lm-eval's hub tasks)
TASKS_DIR = Path(__file__).resolve().parent / "tasks"
SOURCES = ("local", "hub")


def check_options(tasks, source: str = "local", dtype: str = "float32") -> list[str]:
    """The task list, after checking tasks, source and dtype name known values."""
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASK_METRICS]
    if unknown:
        raise ConfigError(f"unknown zero-shot task(s) {unknown}; eval.tasks may list "
                          f"{', '.join(TASK_METRICS)}")
    if source not in SOURCES:
        raise ConfigError(f"eval.source={source} is unknown; use one of {', '.join(SOURCES)}")
    if dtype not in DTYPES:
        raise ConfigError(f"eval.dtype={dtype} is unknown; use one of {', '.join(DTYPES)}")
    return tasks


@contextmanager
def local_task_dir() -> Iterator[Path]:
    """A temporary copy of yopo/tasks/*.yaml beside a link `lm_eval_tasks` -> lm-eval's tasks."""
    import lm_eval.tasks

    with tempfile.TemporaryDirectory(prefix="yopo-tasks-") as tmp:
        folder = Path(tmp)
        os.symlink(Path(lm_eval.tasks.__file__).parent, folder / "lm_eval_tasks")
        for yaml_file in TASKS_DIR.glob("*.yaml"):
            shutil.copy(yaml_file, folder / yaml_file.name)
        yield folder


@contextmanager
def _task_manager(source: str, data_dir) -> Iterator[Any]:
    """lm-eval's TaskManager for our local tasks (indexing only their folder, ~0.1 s) or for its
    built-in hub tasks."""
    from lm_eval.tasks import TaskManager

    if source == "hub":
        if hub_offline():
            raise DataError("eval.source=hub needs the Hugging Face hub, but HF_HUB_OFFLINE / "
                            "HF_DATASETS_OFFLINE is set; use eval.source=local (the files of "
                            "the data dir) or unset them on a machine with network")
        yield TaskManager()
        return
    if data_dir is None:
        raise ConfigError("eval.source=local needs the data dir (data.dir)")
    with local_task_dir() as folder:
        yield TaskManager(include_path=str(folder), include_defaults=False,
                          metadata={"data_dir": str(data_dir)})


def _collect(results: dict[str, Any], names: list[str], tasks: list[str]) -> dict[str, Any]:
    """{task: {metric, value, stderr, n}} in TASK_METRICS order, from lm-eval's results."""
    out = {}
    for name, task in zip(names, tasks):
        metric = TASK_METRICS[task]
        row = results["results"][name]
        stderr = row.get(f"{metric}_stderr,none")
        out[task] = {"metric": metric, "value": float(row[f"{metric},none"]),
                     "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                     "n": int(results["n-samples"][name]["effective"])}
    return out


def run_lm_eval(model, tokenizer, tasks, *, source: str = "local", data_dir=None,
                limit: int | None = None, batch_size: int | str = 1, dtype: str = "float32",
                log_samples: bool = False) -> tuple[dict[str, Any], list[str]]:
    """lm-eval's raw results for `tasks` (names in TASK_METRICS), zero-shot, and the lm-eval
    task names they ran under. `dtype` other than the model's runs the forward passes under
    torch.autocast (lm-eval's mixed_precision_dtype); the model itself is not converted.
    `limit` takes the first `limit` examples of each task (lm-eval's --limit)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    tasks = check_options(tasks, source, dtype)
    autocast = DTYPES[dtype] if DTYPES[dtype] != model.dtype else None
    with _quiet_lm_eval(), _task_manager(source, data_dir) as manager:
        names = [LOCAL_PREFIX + t for t in tasks] if source == "local" else list(tasks)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  mixed_precision_dtype=autocast)
        try:
            results = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=0, limit=limit,
                                              task_manager=manager, log_samples=log_samples)
        except (ConnectionError, OSError) as err:
            if source != "hub":
                raise
            raise DataError(f"eval.source=hub could not load the tasks from the Hugging Face hub "
                            f"({type(err).__name__}: {str(err).splitlines()[0]}); use "
                            "eval.source=local") from err
    return results, names


def example_scores(results: dict[str, Any], names: list[str], tasks: list[str]
                   ) -> dict[str, Any]:
    """Each example's score, from lm-eval's logged samples: {task: {metric, doc_id [n],
    value [n], docs_sha256}} in doc_id order. `docs_sha256` hashes the examples' lm-eval
    doc hashes, so a paired comparison can check that two runs scored the same examples."""
    out = {}
    for name, task in zip(names, tasks):
        metric = TASK_METRICS[task]
        samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
        out[task] = {"metric": metric, "doc_id": [int(s["doc_id"]) for s in samples],
                     "value": [float(s[metric]) for s in samples],
                     "docs_sha256": hashlib.sha256(
                         "".join(s["doc_hash"] for s in samples).encode()).hexdigest()}
    return out


def evaluate_zeroshot(model, tokenizer, tasks, **options) -> dict[str, Any]:
    """Zero-shot accuracy of `model` as the paper reports it (options: see run_lm_eval).

    Returns {task: {metric, value, stderr, n}, "avg": mean value over the tasks, "avg_stderr":
    its standard error (tasks independent), "limit": examples per task (None = full sets),
    "source", "dtype", "batch_size", "seconds", "examples": each example's score
    (`example_scores`; the pipeline writes it to a file of its own, not to metrics.json)}.
    """
    started = time.perf_counter()
    results, names = run_lm_eval(model, tokenizer, tasks, log_samples=True, **options)
    scores = _collect(results, names, list(tasks))
    examples = example_scores(results, names, list(tasks))
    values = [s["value"] for s in scores.values()]
    stderrs = [s["stderr"] for s in scores.values()]
    return {**scores,
            "avg": sum(values) / len(values),
            "avg_stderr": (math.sqrt(sum(e * e for e in stderrs)) / len(stderrs)
                           if None not in stderrs else None),
            "limit": options.get("limit"), "source": options.get("source", "local"),
            "dtype": options.get("dtype", "float32"), "batch_size": options.get("batch_size", 1),
            "seconds": time.perf_counter() - started, "examples": examples}


@contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval warns on every call that the model was passed as an object and that custom
    datasets take kwargs; both are how we use it on purpose."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
