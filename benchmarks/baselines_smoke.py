"""The baselines side by side on the embedded SmolLM2: WikiText-2 token perplexity on a fixed
smoke slice of the evaluation text, and the parameters each method removed. A CPU smoke
measurement (minutes), not the paper's protocol (which reads the whole evaluation text).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/baselines_smoke.py
    ... baselines_smoke.py --methods activation slicegpt --ratios 0.2 --chunks 40

Every run starts from the same dense model and uses the configs in conf/ (method=<name>,
ratio, seed, round_to, data.calibration_tokens) with --calibration-tokens / --calibration-seqlen
overriding the calibration methods' own settings. Perplexity: the first --chunks chunks of
--seqlen tokens of the text before the held-out calibration slice (yopo.eval.perplexity).
`ratio` means FFN width for the neuron methods and hidden dimension for SliceGPT: compare at
equal parameters with the `removed` column.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from yopo.adapters import get_adapter
from yopo.config import compose
from yopo.data.wikitext import split_calibration, wikitext2_token_ids
from yopo.eval.perplexity import chunk_ids, chunked_perplexity
from yopo.methods import build_method
from yopo.methods.base import PruneContext
from yopo.models import count_parameters, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--methods", nargs="+",
                        default=["random", "magnitude", "activation", "slicegpt"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--calibration-tokens", type=int, default=2048)
    parser.add_argument("--calibration-seqlen", type=int, default=512)
    parser.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the dense model too (--no-dense when it is known)")
    args = parser.parse_args()

    base = compose([f"model={args.model}"])
    dense, tokenizer = load_model(base.model, Path(base.paths.cache_dir) / "models")
    _, evaluation = split_calibration(wikitext2_token_ids(tokenizer, base.data.dir),
                                      int(base.data.calibration_tokens))
    chunks = chunk_ids(evaluation, args.seqlen, args.chunks)
    params_dense = count_parameters(dense)
    print(f"# {args.model}: {chunks.shape[0]} chunks x {args.seqlen} tokens of WikiText-2 "
          f"(before the {base.data.calibration_tokens}-token calibration slice); calibration "
          f"{args.calibration_tokens} tokens in sequences of {args.calibration_seqlen}")
    print("| method | ratio | ratio of | params | removed | perplexity | prune s | eval s |")
    print("|---|---|---|---|---|---|---|---|")
    if args.dense:
        started = time.perf_counter()
        ppl = chunked_perplexity(dense, chunks)["value"]
        print(f"| dense | 0 | - | {params_dense:,} | 0.0% | {ppl:.2f} | - | "
              f"{time.perf_counter() - started:.0f} |", flush=True)
    for name in args.methods:
        for ratio in args.ratios:
            cfg = compose([f"model={args.model}", f"method={name}", f"ratio={ratio}"])
            if "calibration_tokens" in cfg.method:
                cfg.method.calibration_tokens = args.calibration_tokens
                cfg.method.calibration_seq_len = args.calibration_seqlen
            model = copy.deepcopy(dense)
            started = time.perf_counter()
            report = build_method(cfg.method).prune(model, get_adapter(model), PruneContext(
                ratio=ratio, seed=int(cfg.seed), round_to=int(cfg.round_to), device="cpu",
                model_name=args.model, tokenizer=tokenizer, data_dir=Path(cfg.data.dir),
                calibration_tokens=int(cfg.data.calibration_tokens)))
            prune_s = time.perf_counter() - started
            params = count_parameters(model)
            started = time.perf_counter()
            ppl = chunked_perplexity(model, chunks)["value"]
            print(f"| {name} | {ratio:g} | {report.get('ratio_semantics', '?')} | {params:,} | "
                  f"{100 * (1 - params / params_dense):.1f}% | {ppl:.2f} | {prune_s:.0f} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)
            del model


if __name__ == "__main__":
    main()
