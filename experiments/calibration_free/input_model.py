"""The calibration-free experiment: which part of expected_activation's input model limits it
(a diagnostic: the oracle rows use calibration activations to explain; the method never does).

Every variant scores neurons as E|act(g_j.x)(u_j.x)| * ||W_out[:, j]|| for a Gaussian x ~ N(mean,
cov) and keeps the method's protect_ends widths; only the mean and the covariance change:

  method                 the method's default (weight-derived DC mean, isotropic noise)
  oracle_activation      measured E|h_j| * ||W_out[:, j]|| (no Gaussian model)
  true_mean_true_cov     measured FFN-input mean and covariance
  method_mean_true_cov   the method's mean, measured covariance
  true_mean_iso          measured mean, isotropic noise of the measured median variance
  method_mean_embed_cov  the method's mean, covariance of the RMS-normalised token embeddings
  method_mean_writer_cov the method's mean, covariance sum_l W W^T over every writer before the
                         FFN (attention outputs, earlier FFN outputs): where the stream can vary

Needs the capture file from capture.py (--capture, default common.CAPTURE_FILE). One CSV row
per variant:

    python experiments/calibration_free/input_model.py \
        --out experiments/calibration_free/results/input_model_calibration.csv
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
import torch.nn.functional as F

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import (CAPTURE_FILE, RESULTS_DIR, gaussian_score, load, ppl_of, token_chunks,
                    unit_trace)
from yopo.methods.expected_activation import (ExpectedActivation, gate_directions, layer_widths,
                                              standard_normal_pairs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--capture", default=str(CAPTURE_FILE))
    p.add_argument("--ratio", type=float, default=0.2)
    p.add_argument("--chunks", type=int, default=8)
    p.add_argument("--out", default=str(RESULTS_DIR / "input_model_calibration.csv"))
    a = p.parse_args()
    model, tok, adapter = load()
    blocks = adapter.blocks(model)
    layers = adapter.decoder_layers(model)
    method = ExpectedActivation(noise_power=0.0)
    widths = layer_widths(len(blocks), adapter.ffn_width(model), a.ratio, 1,
                          method.protected_layers)
    chunks = token_chunks(tok, "calibration", a.chunks)
    captured = torch.load(a.capture)["ffn_in"].double()  # [L, T, d] FFN inputs
    tokens = torch.ones(captured.shape[1], dtype=torch.bool)
    tokens[::512] = False  # the first token of each chunk is an attention sink
    norms = [b.norm_weight.detach().double() for b in blocks]
    directions = gate_directions([b.ffn1.detach() for b in blocks], norms, method.smoothing)
    z = standard_normal_pairs(method.samples)
    embed = model.model.embed_tokens.weight.detach().double()
    embed_cov = unit_trace(torch.cov((embed * torch.rsqrt(embed.pow(2).mean(-1, keepdim=True))).T))
    writers = [(layer.self_attn.o_proj.weight.detach().double(),
                block.ffn_out.weight.detach().double()) for layer, block in zip(layers, blocks)]

    def method_mean(i):
        return method.dc_mean(directions[i], norms[i])

    def method_cov(i, shape):  # method.noise_var per channel before the norm weight
        return method.noise_var * norms[i][:, None] * unit_trace(shape) * norms[i][None]

    def writer_cov(i):
        cov = sum(attn @ attn.T for attn, _ in writers[:i + 1])
        return cov + sum(ffn @ ffn.T for _, ffn in writers[:i])

    scores = {name: [] for name in ("method", "oracle_activation", "true_mean_true_cov",
                                    "method_mean_true_cov", "true_mean_iso",
                                    "method_mean_embed_cov", "method_mean_writer_cov")}
    method_scores, _ = method.scores(model, adapter)
    eye = torch.eye(embed.shape[1], dtype=torch.float64)
    for i, block in enumerate(blocks):
        x = captured[i][tokens]
        mean, cov = x.mean(0), torch.cov(x.T)
        gate, up = (lin.weight.detach().double() for lin in block.ffn_in)
        h = F.silu(x @ gate.T) * (x @ up.T)
        median_var = (x / norms[i]).var(0).median()
        scores["method"].append(method_scores[i])
        scores["oracle_activation"].append(
            h.abs().mean(0) * block.ffn_out.weight.detach().double().norm(dim=0))
        scores["true_mean_true_cov"].append(gaussian_score(block, mean, cov, z))
        scores["method_mean_true_cov"].append(gaussian_score(block, method_mean(i), cov, z))
        scores["true_mean_iso"].append(gaussian_score(
            block, mean, median_var * norms[i][:, None] * eye * norms[i][None], z))
        scores["method_mean_embed_cov"].append(
            gaussian_score(block, method_mean(i), method_cov(i, embed_cov), z))
        scores["method_mean_writer_cov"].append(
            gaussian_score(block, method_mean(i), method_cov(i, writer_cov(i)), z))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "ratio", "allocation", "part", "chunks", "ppl"])
        for name, rows in scores.items():
            keep = [row.topk(k).indices for row, k in zip(torch.stack(rows), widths)]
            ppl = ppl_of(model, adapter, keep, chunks)
            writer.writerow([name, a.ratio, "protect_ends", "calibration", a.chunks,
                             round(ppl, 4)])
            f.flush()
            print(name, round(ppl, 3), flush=True)


if __name__ == "__main__":
    main()
