"""The one prepared device check: every GPU figure the README needs, in one process where it can.

    python benchmarks/gpu_check.py --out DIR             # on a GPU: about 6 minutes
    python benchmarks/gpu_check.py --out DIR --quick     # fewer episodes, batches and layers
    python benchmarks/gpu_check.py --out DIR --dry-run   # every step at toy sizes on a CPU, <1 min

Steps (--steps picks some; each is timed, and a failing step is recorded, not fatal):
  cuda_tests   `pytest -m cuda` (the tests that need a GPU)
  policy       PruneNet policy training at LLaMA-2-7B shapes (32 FFN1 matrices [11008, 4096],
               bf16, random with log-normal row scales), 20 episodes: wall time, peak memory
               (two episodes first; the 20 run when they project under 150 s, else the report
               gives the projection); the straightforward SVD path for one episode beside it
  reference    the authors' algorithm (method=prunenet_reference) for one episode, same shapes
  throughput   dense vs pruned LLaMA-2-7B-shaped decoder (random weights, bf16) at r = 0.2 and
               0.3, prefill and decode tokens/s at batch 1, 8, 32: kept width exact, rounded to
               64 and 128; timed unfused, then with gate/up fused in every model, the dense one
               included (as the pipeline does), each against the dense model of its own pass;
               measured speedup / ideal 1/(1 - r f) (fusing changes neither FLOPs nor bytes)
  end_to_end   `src/run.py model=llama2_7b_random` (prune, save, perplexity on 2 chunks of the
               shipped WikiText-2 text, throughput), then the checkpoint reloaded from disk and
               its perplexity recomputed by scripts/recompute_ppl.py: the 7B path fits
Writes DIR/gpu_check.json (every figure) and DIR/gpu_check.md (the tables for the README).
On the device machine hydra-core and omegaconf come as wheels (scripts/gpu_wheels.sh), the
data as a copy of wikitext2/ in a carried folder (--data-dir).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree

import torch

from bench_mlp import llama7b_shaped, pruned_copy
from bench_policy import StackedLayers, llama7b_layers, run as time_policy
from yopo.adapters import get_adapter
from yopo.config import REPO_ROOT
from yopo.eval.throughput import ideal_speedup, measure_throughput
from yopo.io import atomic_file, write_json
from yopo.methods.base import PruneContext, kept_width
from yopo.methods.prunenet.method import PruneNet
from yopo.methods.prunenet.reference import PruneNetReference
from yopo.modeling.fused_mlp import fuse_gate_up, unfuse_gate_up

STEPS = ("cuda_tests", "policy", "reference", "throughput", "end_to_end")


def sizes(mode: str) -> dict[str, Any]:
    """Every size the steps use, per mode (full, quick, dry-run)."""
    full = dict(layers=32, rows=11008, cols=4096, episodes=20, reference_layers=32,
                decoder=dict(), decoder_layers=32, ratios=(0.2, 0.3), round_to=(1, 64, 128),
                batch_sizes=(1, 8, 32), prompt_tokens=512, decode_tokens=32, repeats=3,
                e2e_model="llama2_7b_random", e2e_seqlen=2048, e2e_batches=(1, 8),
                policy_budget_s=150)
    if mode == "quick":
        return {**full, "episodes": 5, "reference_layers": 8, "ratios": (0.3,),
                "batch_sizes": (1, 8), "repeats": 2, "policy_budget_s": 45}
    if mode == "dry-run":
        return {**full, "layers": 4, "rows": 256, "cols": 64, "episodes": 2,
                "reference_layers": 4, "decoder_layers": 2, "ratios": (0.3,), "round_to": (1, 64),
                "decoder": dict(hidden_size=64, intermediate_size=172, num_attention_heads=4,
                                num_key_value_heads=4, vocab_size=512),
                "batch_sizes": (1, 2), "prompt_tokens": 16, "decode_tokens": 4, "repeats": 1,
                "e2e_model": "tiny_llama", "e2e_seqlen": 64, "e2e_batches": (1,)}
    return full


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---- the steps ----------------------------------------------------------------------------------
def cuda_tests(args, size) -> dict[str, Any]:
    """`pytest -m cuda`, each test's outcome read from pytest's JUnit XML. On a GPU a skipped
    test fails the step (pytest exits 0 when every test is skipped; these are there to run on
    the device); on the CPU (--dry-run) the report lists each skip and its reason."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "cuda_tests.xml"
        done = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p",
                               "no:cacheprovider", f"--junitxml={xml}", "tests/test_cuda.py"],
                              cwd=REPO_ROOT, capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = done.stdout.strip().splitlines()
        summary = lines[-1] if lines else done.stderr[-500:]
        if done.returncode != 0:
            raise RuntimeError(f"pytest -m cuda exited {done.returncode}: {summary}")
        cases = list(ElementTree.parse(xml).iter("testcase"))
    skipped = {case.get("name"): skip.get("message")
               for case in cases for skip in case.iter("skipped")}
    if skipped and args.device.startswith("cuda"):
        raise RuntimeError(f"pytest -m cuda skipped {len(skipped)} of {len(cases)} tests on "
                           f"{args.device}: {skipped}")
    return {"returncode": done.returncode, "summary": summary, "tests": len(cases),
            "skipped": skipped}


def policy(args, size) -> dict[str, Any]:
    layers = llama7b_layers(size["layers"], args.device, rows=size["rows"], cols=size["cols"])
    adapter, k = StackedLayers(layers), kept_width(size["rows"], 0.3)
    ctx = PruneContext(ratio=0.3, seed=0, device=args.device)
    # Two episodes first: the full count runs only if it fits the step's time budget (sizes were
    # set without a GPU to see); otherwise the report says what it extrapolates.
    probe = time_policy("gram", PruneNet(episodes=2), None, adapter, k, ctx, False)
    per_episode = (probe["train_s"] - probe["setup_s"]) / 2
    projected = probe["setup_s"] + size["episodes"] * per_episode
    fast = probe
    if size["episodes"] > 2 and projected <= size["policy_budget_s"]:
        fast = time_policy("gram", PruneNet(episodes=size["episodes"]), None, adapter, k, ctx,
                           False)
    svd = time_policy("svd", PruneNet(episodes=1, spectrum="svd", layer_batch=len(layers)),
                      None, adapter, k, ctx, False)
    keep = ("episodes", "setup_s", "train_s", "prune_s", "ks_best", "ks_final", "peak_gib")
    return {"shape": [size["layers"], size["rows"], size["cols"]], "k": k,
            "fast": {key: fast[key] for key in keep},
            "projected_s_for_episodes": {"episodes": size["episodes"], "seconds": projected,
                                         "measured": fast["episodes"] == size["episodes"]},
            "fast_s_per_episode": (fast["train_s"] - fast["setup_s"]) / fast["episodes"],
            "svd_one_episode": {key: svd[key] for key in keep},
            "svd_s_per_episode": svd["train_s"] - svd["setup_s"]}


def reference(args, size) -> dict[str, Any]:
    layers = llama7b_layers(size["reference_layers"], args.device, rows=size["rows"],
                            cols=size["cols"])
    k = kept_width(size["rows"], 0.3)
    reset_peak(args.device)
    synchronize(args.device)
    started = time.perf_counter()
    _, report = PruneNetReference(episodes=1).keep_indices(
        None, StackedLayers(layers), k, PruneContext(ratio=0.3, seed=0, device=args.device))
    synchronize(args.device)
    total = time.perf_counter() - started
    return {"layers": len(layers), "k": k, "policy_params": report["policy_params"],
            "train_s_one_episode": report["policy_train_seconds"],
            "total_s": total, "final_mask_s": total - report["policy_train_seconds"],
            "extrapolated_32_layers_20_episodes_s":
                report["policy_train_seconds"] * 32 / len(layers) * 20,
            "skipped_steps": report["skipped_steps"], "peak_gib": peak_gib(args.device)}


def throughput(args, size) -> dict[str, Any]:
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    dense = llama7b_shaped(size["decoder_layers"], dtype, args.device, **size["decoder"])
    width = dense.config.intermediate_size
    rows = []
    for ratio in size["ratios"]:
        models, ideals = {"dense": dense}, {}
        for k in sorted({kept_width(width, ratio, r) for r in size["round_to"]}, reverse=True):
            rounds = "/".join(str(r) for r in size["round_to"] if kept_width(width, ratio, r) == k)
            pruned = pruned_copy(dense, k)
            models[f"k={k} (round_to {rounds})"] = pruned
            ideals[f"k={k} (round_to {rounds})"] = ideal_speedup(dense, pruned, get_adapter(dense))
        for fused in (False, True):
            if fused:  # in place, the dense model too: like with like, as the pipeline fuses
                for model in models.values():
                    fuse_gate_up(model)
            settings = measure_throughput(models, size["batch_sizes"], size["prompt_tokens"],
                                          size["decode_tokens"], warmup=1,
                                          repeats=size["repeats"])
            for setting in settings:
                base = setting["dense"]
                for name in models:
                    if name == "dense":
                        continue
                    row = {"ratio": ratio, "model": name + (" fused" if fused else ""),
                           "batch": setting["batch_size"],
                           "peak_gib_dense": base["peak_memory_bytes"] / 2**30,
                           "peak_gib": setting[name]["peak_memory_bytes"] / 2**30}
                    for phase in ("prefill", "decode"):
                        speedup = (setting[name][f"{phase}_tokens_per_s"]
                                   / base[f"{phase}_tokens_per_s"])
                        row.update({f"{phase}_tok_s_dense": base[f"{phase}_tokens_per_s"],
                                    f"{phase}_tok_s": setting[name][f"{phase}_tokens_per_s"],
                                    f"{phase}_speedup": speedup,
                                    f"{phase}_ideal": ideals[name][phase],
                                    f"{phase}_of_ideal": speedup / ideals[name][phase]})
                    rows.append(row)
        unfuse_gate_up(dense)  # the next ratio slices it again through the adapter
        del models, ideals
        reset_peak(args.device)
    return {"dtype": str(dtype), "layers": size["decoder_layers"], "ffn_width": width,
            "prompt_tokens": size["prompt_tokens"], "decode_tokens": size["decode_tokens"],
            "repeats": size["repeats"], "rows": rows}


def end_to_end(args, size) -> dict[str, Any]:
    runs_dir = Path(args.work_dir) / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    batches = ",".join(str(b) for b in size["e2e_batches"])
    overrides = [f"model={size['e2e_model']}", "method=prunenet", "method.episodes=2",
                 "ratio=0.3", "eval=none", "logger=none", f"device={args.device}",
                 f"eval.perplexity={{seqlen:{size['e2e_seqlen']},max_chunks:2,batch_size:1}}",
                 f"eval.throughput={{batch_sizes:[{batches}],prompt_tokens:128,"
                 "decode_tokens:16,warmup:1,repeats:2}", f"paths.runs_dir={runs_dir}",
                 "skip_existing=false"]
    if args.data_dir:
        overrides.append(f"paths.data_dir={args.data_dir}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "src/run.py", *overrides], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"src/run.py exited {done.returncode}: {done.stderr[-1500:]}")
    out: dict[str, Any] = {"returncode": done.returncode, "wall_s": wall}
    found = sorted(runs_dir.rglob("metrics.json"))
    metrics = json.loads(found[-1].read_text())
    out.update({key: metrics.get(key) for key in (
        "run_id", "params_dense", "params_pruned", "ffn_width_pruned", "policy_train_seconds",
        "compression_seconds", "eval_seconds", "total_seconds", "ppl_wikitext2",
        "peak_memory_bytes", "inference")})
    out["speedups"] = [{"batch": s["batch_size"], **s["speedup"]}
                       for s in metrics["throughput"]["settings"]]
    out["ideal"] = metrics["throughput"]["ideal_speedup"]
    recompute = [sys.executable, "scripts/recompute_ppl.py", str(found[-1].parent),
                 "--device", args.device, "--rtol", "0.02"]
    if args.data_dir:
        recompute += ["--data-dir", args.data_dir]
    started = time.perf_counter()
    again = subprocess.run(recompute, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    out["reload_recompute"] = {"returncode": again.returncode,
                               "seconds": time.perf_counter() - started,
                               "table": again.stdout.strip().splitlines()[-1:]
                               or [again.stderr[-500:]]}
    if again.returncode:
        raise RuntimeError(f"reload and recompute failed: {out['reload_recompute']}")
    return out


# ---- the report ---------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [f"# gpu_check ({report['mode']}), {report['date']}", "",
             f"{report['device_name']}; torch {report['torch']}; {report['wall_s']:.0f} s in all",
             ""]
    steps = report["steps"]
    for name, step in steps.items():
        if "error" in step:
            lines += [f"- **{name}** failed after {step['seconds']:.0f} s: {step['error']}", ""]
    if "policy" in steps and "fast" in steps["policy"]:
        p = steps["policy"]
        lines += ["| policy training (FFN1 " + " x ".join(map(str, p["shape"])) + ") | "
                  "episodes | train s | s/episode | peak GiB | final KS |", "|---|---|---|---|---|---|"]
        for label, row, per_episode in (("fast (Gram)", p["fast"], p["fast_s_per_episode"]),
                                        ("straightforward (svdvals)", p["svd_one_episode"],
                                         p["svd_s_per_episode"])):
            lines.append(f"| {label} | {row['episodes']} | {row['train_s']:.1f} | "
                         f"{per_episode:.2f} | {row['peak_gib'] or 0:.1f} | "
                         f"{row['ks_final']:.4f} |")
        projected = p["projected_s_for_episodes"]
        lines += ["", f"{projected['episodes']} episodes: {projected['seconds']:.0f} s "
                  + ("(measured above)" if projected["measured"] else
                     "(projected from the 2 measured episodes: over the step's time budget)"),
                  ""]
    if "reference" in steps and "train_s_one_episode" in steps["reference"]:
        r = steps["reference"]
        lines += [f"prunenet_reference, one episode over {r['layers']} layers: "
                  f"{r['train_s_one_episode']:.1f} s (x 32/{r['layers']} layers x 20 episodes "
                  f"~ {r['extrapolated_32_layers_20_episodes_s']:.0f} s), final mask "
                  f"{r['final_mask_s']:.1f} s, {r['policy_params']:,} policy parameters, peak "
                  f"{r['peak_gib'] or 0:.1f} GiB", ""]
    if "throughput" in steps and "rows" in steps["throughput"]:
        t = steps["throughput"]
        lines += [f"Throughput, {t['layers']} layers, {t['dtype']}, prompt {t['prompt_tokens']} "
                  f"+ {t['decode_tokens']} decode tokens, median of {t['repeats']}; a fused model "
                  "against the fused dense model, an unfused one against the unfused:", "",
                  "| r | model | batch | prefill tok/s dense -> pruned | prefill x (ideal) | of ideal "
                  "| decode tok/s dense -> pruned | decode x (ideal) | of ideal | peak GiB dense -> pruned |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in t["rows"]:
            cells = []
            for phase in ("prefill", "decode"):
                cells += [f"{row[f'{phase}_tok_s_dense']:,.0f} -> {row[f'{phase}_tok_s']:,.0f}",
                          f"{row[f'{phase}_speedup']:.2f} ({row[f'{phase}_ideal']:.2f})",
                          f"{row[f'{phase}_of_ideal']:.2f}"]
            lines.append(f"| {row['ratio']} | {row['model']} | {row['batch']} | "
                         + " | ".join(cells)
                         + f" | {row['peak_gib_dense']:.1f} -> {row['peak_gib']:.1f} |")
        lines.append("")
    if "end_to_end" in steps and "wall_s" in steps["end_to_end"]:
        e = steps["end_to_end"]
        lines.append(f"End to end (`src/run.py`, exit {e['returncode']}): {e['wall_s']:.0f} s; "
                     f"parameters {e.get('params_dense') or 0:,} -> {e.get('params_pruned') or 0:,}"
                     f"; perplexity {e.get('ppl_wikitext2')}; speedups {e.get('speedups')}; "
                     f"reload + recompute {e.get('reload_recompute')}")
        lines.append("")
    if "cuda_tests" in steps and "summary" in steps["cuda_tests"]:
        lines.append(f"`pytest -m cuda`: {steps['cuda_tests']['summary']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the JSON and table")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--device", help="default: cuda (cpu for --dry-run)")
    parser.add_argument("--data-dir", help="the evaluation data (default: paths.data_dir)")
    parser.add_argument("--work-dir", default="/tmp/yopo_gpu_check",
                        help="scratch space for the end-to-end run (a 7B checkpoint: ~13 GB)")
    args = parser.parse_args()
    args.mode = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: no GPU here; run with --dry-run on a CPU")
    size = sizes(args.mode)
    steps: dict[str, Callable] = {"cuda_tests": cuda_tests, "policy": policy,
                                  "reference": reference, "throughput": throughput,
                                  "end_to_end": end_to_end}
    report: dict[str, Any] = {
        "mode": args.mode, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": args.device, "torch": torch.__version__, "python": platform.python_version(),
        "device_name": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                        else platform.processor() or "cpu"), "sizes": size, "steps": {}}
    started = time.perf_counter()
    for name in args.steps:
        print(f"[gpu_check] {name} ...", flush=True)
        step_started = time.perf_counter()
        try:
            result = steps[name](args, size)
        except Exception as err:  # noqa: BLE001 - a failed step is a finding, the rest still runs
            result = {"error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-2000:]}
        result["seconds"] = time.perf_counter() - step_started
        report["steps"][name] = result
        print(f"[gpu_check] {name}: {result['seconds']:.1f} s"
              + (f" FAILED {result['error']}" if "error" in result else ""), flush=True)
        reset_peak(args.device)
    report["wall_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "gpu_check.json", report)
    table = markdown(report)
    with atomic_file(args.out / "gpu_check.md") as tmp:
        tmp.write_text(table)
    print(table)
    sys.exit(1 if any("error" in s for s in report["steps"].values()) else 0)


if __name__ == "__main__":
    main()
