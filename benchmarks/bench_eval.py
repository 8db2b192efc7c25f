"""How long the zero-shot suite takes for the dense embedded model on this machine, and which
batch size / dtype makes it fastest without changing the scores.

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/bench_eval.py
    ... bench_eval.py --limit 40 --configs float32:1 float32:32 bfloat16:32
    ... bench_eval.py --full                 # the full five sets with conf/eval/default.yaml

Per task and setting (dtype:batch_size) it runs the first --limit examples and prints
loglikelihood requests per second (time inside the model's forward, from hooks), the task's
score, and how far the per-request log-likelihoods and the per-example predictions move from the
first setting. It then projects the full-suite time from each task's full request count.
--full runs all five full sets in one lm-eval call with the default eval config and prints the
measured wall time and scores. Timings on a shared CPU are noisy: repeat before concluding.
"""
from __future__ import annotations

import argparse
import time

import torch

from yopo.config import compose
from yopo.eval.zeroshot import evaluate_zeroshot, run_lm_eval
from yopo.paper import TASK_METRICS
from yopo.models import load_model
from yopo.eval.tasks import local_data


class ForwardTimer:
    """Wall and CPU seconds spent in model.forward (lm-eval's own bookkeeping excluded). CPU
    time is reported too because other jobs on a shared machine inflate wall time."""

    def __init__(self, model):
        self.wall = self.cpu = 0.0
        self._start = (0.0, 0.0)
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, *_):
        self._start = (time.perf_counter(), time.process_time())

    def _post(self, *_):
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]


def full_request_counts(data_dir) -> dict[str, int]:
    """Loglikelihood requests of each full task: one per answer choice."""
    counts = {}
    for task in TASK_METRICS:
        split = next(iter(getattr(local_data, task)(data_dir).values()))
        if task == "hellaswag":
            counts[task] = sum(len(e) for e in split["endings"])
        elif task.startswith("arc"):
            counts[task] = sum(len(c["text"]) for c in split["choices"])
        else:
            counts[task] = 2 * len(split)
    return counts


def per_sample(results, name, metric):
    """(log-likelihood of every request, per-example correctness) of one task's samples."""
    samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
    lls = [float(r[0][0]) for s in samples for r in s["resps"]]
    return lls, [float(s[metric]) for s in samples]


def subset_study(model, tokenizer, data_dir, limit, configs):
    """Tasks outer, settings inner: settings are compared minutes apart, not a run apart."""
    timer = ForwardTimer(model)
    counts = full_request_counts(data_dir)
    projected = {config: 0.0 for config in configs}
    print(f"{'task':14s} {'setting':14s} {'requests':>8s} {'req/s':>7s} {'req/cpu-s':>9s} "
          f"{'score':>6s} {'max|dLL|':>9s} {'changed':>7s}")
    for task, metric in TASK_METRICS.items():
        reference = None
        for config in configs:
            dtype, batch = config.split(":")
            batch = batch if batch == "auto" else int(batch)
            timer.wall = timer.cpu = 0.0
            results, (name,) = run_lm_eval(model, tokenizer, [task], data_dir=data_dir,
                                           limit=limit, batch_size=batch, dtype=dtype,
                                           log_samples=True)
            lls, correct = per_sample(results, name, metric)
            rate = len(lls) / timer.wall
            projected[config] += counts[task] / rate
            reference = reference or (lls, correct)
            d_ll = max(abs(a - b) for a, b in zip(lls, reference[0]))
            changed = sum(a != b for a, b in zip(correct, reference[1]))
            print(f"{task:14s} {config:14s} {len(lls):8d} {rate:7.1f} "
                  f"{len(lls) / timer.cpu:9.1f} {sum(correct) / len(correct):6.3f} "
                  f"{d_ll:9.2e} {changed:7d}", flush=True)
    print(f"\nfull-suite requests: {sum(counts.values())} {counts}")
    for config, seconds in projected.items():
        print(f"projected model time for the full five sets, {config}: {seconds / 60:.1f} min "
              "(plus ~10 s of data loading per call)")


def full_run(model, tokenizer, cfg):
    e = cfg.eval
    started = time.perf_counter()
    scores = evaluate_zeroshot(model, tokenizer, list(e.tasks), source=e.source,
                               data_dir=cfg.data.dir, limit=e.limit, batch_size=e.batch_size,
                               dtype=e.dtype)
    minutes = (time.perf_counter() - started) / 60
    for task in e.tasks:
        s = scores[task]
        print(f"{task:14s} {s['metric']:8s} {s['value']:.4f} ± {s['stderr']:.4f} (n={s['n']})")
    print(f"average {scores['avg']:.4f}")
    print(f"full-suite evaluation time, dense {cfg.model.name}, dtype {e.dtype}, batch "
          f"{e.batch_size}, {torch.get_num_threads()} threads: {minutes:.1f} min")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--limit", type=int, default=20, help="examples per task (subset study)")
    parser.add_argument("--configs", nargs="+", default=["float32:1", "float32:8", "float32:16",
                                                         "float32:32", "bfloat16:16"],
                        help="dtype:batch_size settings; the first is the reference")
    parser.add_argument("--full", action="store_true",
                        help="run the full five sets with conf/eval/default.yaml instead")
    args = parser.parse_args()
    cfg = compose([f"model={args.model}", "eval=default"])
    model, tokenizer = load_model(cfg.model, f"{cfg.paths.cache_dir}/models")
    print(f"{cfg.model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters,"
          f" {torch.get_num_threads()} threads")
    if args.full:
        full_run(model, tokenizer, cfg)
    else:
        subset_study(model, tokenizer, cfg.data.dir, args.limit, args.configs)


if __name__ == "__main__":
    main()
