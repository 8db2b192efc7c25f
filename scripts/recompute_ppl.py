"""Recompute a run's WikiText-2 perplexity from its saved checkpoint alone, as a check on the
number in its metrics.json.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/recompute_ppl.py results/runs/smollm2_135m/*/ratio0.2_*

For every run folder: reload `pruned_model/` from disk with plain transformers
(`trust_remote_code=True`, so per-layer-width and SliceGPT checkpoints rebuild themselves from
their own modeling file), rebuild the chunks the run recorded (`ppl_protocol`: seqlen, chunks,
calibration tokens held out, the same tokenizer) and compute the perplexity with transformers'
own causal-LM loss (`labels=`). Nothing of yopo's evaluation or data code is used: the text is
read from the raw file and split here, by the protocol yopo.eval.perplexity documents, so a bug
in yopo's reader or split shows as a difference. Prints the recorded and the recomputed value
and exits 1 if any pair differs by more than --rtol.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from yopo.config import compose


def wikitext2_test_ids(tokenizer, data_dir: str | Path) -> torch.Tensor:
    """The WikiText-2 test text as pruning papers read it, tokenised once: [N]. Its rows are
    those of HF `wikitext-2-raw-v1` test, which that dataset's builder made by iterating over the
    raw file's lines (a blank line becomes ""); the rows are joined with "\\n\\n"."""
    path = Path(data_dir) / "wikitext2" / "wiki.test.raw"
    if not path.is_file():
        raise SystemExit(f"{path}: no WikiText-2 test file there (give --data-dir)")
    with open(path, encoding="utf-8") as raw:
        rows = [line if line.strip() else "" for line in raw]
    return torch.tensor(tokenizer("\n\n".join(rows))["input_ids"])


def recompute(run_dir: Path, data_dir: str, device: str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """(recorded, recomputed) perplexity of one run folder."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    protocol = metrics.get("ppl_protocol")
    if not protocol or not (run_dir / "pruned_model").is_dir():
        raise SystemExit(f"{run_dir}: needs a run with perplexity evaluated and save_model=true")
    folder = run_dir / "pruned_model"
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True,
                                                 dtype=dtype).to(device).eval()
    ids = wikitext2_test_ids(tokenizer, data_dir)
    cut = ids.numel() - int(protocol["calibration_tokens"])  # the last ones are held out
    tuning = protocol.get("text", "evaluation") == "calibration"  # a tuning run (eval=tuning)
    evaluation = ids[cut:] if tuning else ids[:cut]
    seqlen, chunks = int(protocol["seqlen"]), int(protocol["chunks"])
    if evaluation.numel() < seqlen * chunks:
        raise SystemExit(f"{run_dir}: the text has {evaluation.numel()} tokens, fewer than the "
                         f"{chunks} chunks of {seqlen} the run recorded")
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(chunks):
            chunk = evaluation[i * seqlen:(i + 1) * seqlen][None].to(device)  # [1, seqlen]
            loss = model(chunk, labels=chunk, use_cache=False).loss  # mean of seqlen-1 losses
            nll += loss.item() * (seqlen - 1)
            tokens += seqlen - 1
    return float(metrics["ppl_wikitext2"]), math.exp(nll / tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with pruned_model/)")
    parser.add_argument("--data-dir", default=compose([]).data.dir)
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                        help="float32 (default) recomputes independently of the run's dtype")
    args = parser.parse_args()
    failed = False
    print(f"{'run':70} {'recorded':>12} {'recomputed':>12} {'rel. diff':>9}")
    for run_dir in args.runs:
        recorded, again = recompute(run_dir, args.data_dir, args.device,
                                    getattr(torch, args.dtype))
        diff = abs(again - recorded) / recorded
        failed |= diff > args.rtol
        print(f"{str(run_dir)[-70:]:70} {recorded:>12.4f} {again:>12.4f} {diff:>9.2e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
