"""The calibration-free experiment: the shape of expected_activation's input noise (a diagnostic;
the oracle rows and the per-layer table read calibration activations to explain, the method
never does).

The method's noise is isotropic *before* the norm weight w: x-space variance w_c^2 * noise_var
per channel. Two questions:

1. Which weight statistic tracks the measured per-channel variance of the normalised stream
   (x / w, "z-space")? Per layer, Spearman correlation of that variance with: the normalised
   token embeddings' variance, the summed squared rows of every earlier writer, 1 / w^2, the
   gate's squared column norms, 1 / w_attn^2 (the attention norm), and the squared mean.
   -> experiments/calibration_free/results/noise_variance_proxies.csv
2. How much does the noise shape move perplexity (protect_ends widths, r = 0.2, the method's
   mean, total noise variance held at noise_var * sum(w^2))?
     power p       x-space variance proportional to w^(2 (1 - p)): p = 0 is the method, p = 1
                   isotropic after the norm weight (the norm weight compensates the stream)
     ffn_gram a    (1 - a) I + a * (norm-folded gate and up rows' Gram), as the z-space shape
     attn_gram a   the same with the layer's q, k, v rows and the attention norm weight
     oracle_diag   the measured per-channel variance (diagonal only)
     oracle_cov    the measured covariance
   -> experiments/calibration_free/results/noise_shape_calibration.csv

Needs the capture file from capture.py (common.CAPTURE_FILE):

    python experiments/calibration_free/noise_shape.py
"""
from __future__ import annotations

import csv

import torch

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import (CAPTURE_FILE, RESULTS_DIR, gaussian_score, load, ppl_of, spearman,
                    token_chunks, unit_trace)
from yopo.methods.expected_activation import (ExpectedActivation, gate_directions, layer_widths,
                                              standard_normal_pairs)

RATIO, CHUNKS = 0.2, 8


def weight(linear) -> torch.Tensor:
    return linear.weight.detach().double()


def main() -> None:
    model, tok, adapter = load()
    blocks, layers = adapter.blocks(model), adapter.decoder_layers(model)
    method = ExpectedActivation(noise_var=0.05, bias_scale=0.85, noise_power=0.0)  # the baseline
    captured = torch.load(CAPTURE_FILE)["ffn_in"].double()  # [L, T, d]
    tokens = torch.ones(captured.shape[1], dtype=torch.bool)
    tokens[::512] = False  # the first token of each chunk is an attention sink
    norms = [b.norm_weight.detach().double() for b in blocks]
    attn_norms = [layer.input_layernorm.weight.detach().double() for layer in layers]

    # 1. per-channel variance of the normalised stream against weight statistics
    embed = model.model.embed_tokens.weight.detach().double()
    embed_var = (embed * torch.rsqrt(embed.pow(2).mean(-1, keepdim=True))).var(0)
    written = torch.zeros_like(embed_var)  # sum of squared rows of every writer so far
    proxies = []
    for i, (layer, block) in enumerate(zip(layers, blocks)):
        z = captured[i][tokens] / norms[i]
        variance = z.var(0)
        written += weight(layer.self_attn.o_proj).pow(2).sum(1)
        proxies.append({"layer": i, "log_variance_range": round(float(variance.log().max() - variance.log().min()), 3),
                        "sp_embed_var": spearman(variance, embed_var),
                        "sp_writers": spearman(variance, written),
                        "sp_inv_norm_weight_sq": spearman(variance, norms[i].pow(-2)),
                        "sp_gate_column_sq": spearman(variance, weight(block.ffn_in[0]).pow(2).sum(0)),
                        "sp_inv_attn_norm_sq": spearman(variance, attn_norms[i].pow(-2)),
                        "sp_mean_sq": spearman(variance, z.mean(0).pow(2))})
        written += weight(block.ffn_out).pow(2).sum(1)
    with open(RESULTS_DIR / "noise_variance_proxies.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(proxies[0]))
        writer.writeheader()
        writer.writerows({k: round(v, 3) for k, v in row.items()} for row in proxies)

    # 2. perplexity of the method's scores under other noise shapes
    widths = layer_widths(len(blocks), adapter.ffn_width(model), RATIO, 1, method.protected_layers)
    chunks = token_chunks(tok, "calibration", CHUNKS)
    directions = gate_directions([b.ffn1.detach() for b in blocks], norms, method.smoothing)
    draws = standard_normal_pairs(method.samples)
    eye = torch.eye(embed.shape[1], dtype=torch.float64)

    def gram(rows: list[torch.Tensor], fold: torch.Tensor) -> torch.Tensor:  # z-space [d, d]
        return unit_trace(sum((r * fold).T @ (r * fold) for r in rows))

    def x_cov(i: int, variant: str, value: float) -> torch.Tensor:
        """The x-space covariance [d, d], total variance noise_var * sum(w^2) as the method's."""
        w = norms[i]
        if variant.startswith("oracle"):
            measured = torch.cov(captured[i][tokens].T)  # x-space
            cov = torch.diag(measured.diagonal()) if variant == "oracle_diag" else measured
        elif variant == "power":  # the method's own noise_power (x-space, diagonal)
            cov = torch.diag(ExpectedActivation(noise_power=value).noise_variance(1.0, w))
        else:
            if variant == "ffn_gram":
                shape = (1 - value) * eye + value * gram([weight(lin) for lin in blocks[i].ffn_in],
                                                         w)
            else:  # attn_gram
                attn = layers[i].self_attn
                shape = (1 - value) * eye + value * gram(
                    [weight(attn.q_proj), weight(attn.k_proj), weight(attn.v_proj)], attn_norms[i])
            cov = w[:, None] * shape * w[None]
        return cov * (method.noise_var * w.pow(2).sum() / cov.trace())

    variants = ([("power", p) for p in (0.0, 0.5, 1.0, 1.5)]
                + [(kind, a) for kind in ("ffn_gram", "attn_gram") for a in (0.25, 1.0)]
                + [("oracle_diag", 1.0), ("oracle_cov", 1.0)])
    with open(RESULTS_DIR / "noise_shape_calibration.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "value", "ratio", "allocation", "part", "chunks", "ppl"])
        for variant, value in variants:
            scores = []
            for i, block in enumerate(blocks):
                scores.append(gaussian_score(block, method.dc_mean(directions[i], norms[i]),
                                             x_cov(i, variant, value), draws))
            keep = [None if k == s.numel() else s.topk(k).indices for s, k in zip(scores, widths)]
            ppl = ppl_of(model, adapter, keep, chunks)
            writer.writerow([variant, value, RATIO, "protect_ends", "calibration", CHUNKS,
                             round(ppl, 4)])
            f.flush()
            print(variant, value, round(ppl, 3), flush=True)


if __name__ == "__main__":
    main()
