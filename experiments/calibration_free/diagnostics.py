"""Diagnostics of the calibration-free experiment (they use calibration activations to
*explain*; the method never does): per layer of SmolLM2, how FFN-neuron activity relates to
weight statistics, how well the weights reveal the input mean (the DC) and covariance. Needs the
capture file from capture.py (FFN inputs on 4 calibration chunks; --capture, default
common.CAPTURE_FILE). Writes one CSV row per layer.

    python experiments/calibration_free/capture.py
    python experiments/calibration_free/diagnostics.py \
        --out experiments/calibration_free/results/layer_diagnostics.csv

Columns (act_j = E|h_j| * ||W_out[:, j]||, sinks = first token of each chunk excluded):
  fire_rate                 mean fraction of tokens with gate pre-activation > 0
  dc_energy                 ||E x||^2 / E||x||^2 of the FFN input x (after the norm weight)
  sp_act_gate_norm, sp_act_down_norm   Spearman(act, ||g_j||), Spearman(act, ||W_out[:, j]||)
  sp_act_bias               Spearman(act, g_j . E x): the effective gate bias
  sp_gate_norm_bias         Spearman(||g_j||, g_j . E x)
  bias_pearson_dc_estimate  Pearson(g_j . mu_hat, g_j . E x), mu_hat from gate_directions (signed)
  sp_act_true_mean_iso      Spearman(act, Gaussian score with the true mean, isotropic noise)
  sp_act_true_mean_cov      Spearman(act, Gaussian score with the true mean and covariance)
  sp_act_method             Spearman(act, expected_activation's score)
  cov_top20_overlap_gate    overlap of the input covariance's top-20 eigenspace with the gate's
                            top-20 right singular space (chance = 20/576)
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
import torch.nn.functional as F

# common first: it sets the environment defaults (HF_HUB_OFFLINE, ...) before yopo loads
from common import CAPTURE_FILE, RESULTS_DIR, gaussian_score, load, spearman
from yopo.methods.expected_activation import (ExpectedActivation, gate_directions,
                                              standard_normal_pairs)


def pearson(a, b):
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--capture", default=str(CAPTURE_FILE))
    p.add_argument("--out", default=str(RESULTS_DIR / "layer_diagnostics.csv"))
    a = p.parse_args()
    X = torch.load(a.capture)["ffn_in"].double()  # [L, T, d]
    keep = torch.ones(X.shape[1], dtype=torch.bool)
    keep[::512] = False  # drop the first token of each chunk (the attention sink)
    model, _, adapter = load()
    blocks = adapter.blocks(model)
    z = standard_normal_pairs(2048)
    dirs = gate_directions([b.ffn1.detach() for b in blocks],
                           [b.norm_weight.detach().double() for b in blocks], smoothing=4)
    method_scores, _ = ExpectedActivation(noise_power=0.0).scores(model, adapter)
    rows = []
    for i, block in enumerate(blocks):
        g, u = (lin.weight.detach().double() for lin in block.ffn_in)
        w = block.norm_weight.detach().double()
        x = X[i][keep]
        mean, cov = x.mean(0), torch.cov(x.T)
        pre = x @ g.T
        h = F.silu(pre) * (x @ u.T)
        act = h.abs().mean(0) * block.ffn_out.weight.detach().double().norm(dim=0)
        bias = g @ mean
        typical = ((x / w).var(0)).median()  # per-channel variance before the norm weight
        iso = gaussian_score(block, mean, torch.diag(typical * w * w), z)
        full = gaussian_score(block, mean, cov, z)
        top_cov = torch.linalg.eigh(cov).eigenvectors[:, -20:]
        top_gate = torch.linalg.eigh(g.T @ g).eigenvectors[:, -20:]
        rows.append({
            "layer": i,
            "fire_rate": round(float((pre > 0).double().mean()), 3),
            "dc_energy": round(float(mean.pow(2).sum() / x.pow(2).sum(1).mean()), 3),
            "sp_act_gate_norm": round(spearman(act, g.norm(dim=1)), 3),
            "sp_act_down_norm": round(spearman(act, block.ffn_out.weight.detach().norm(dim=0)), 3),
            "sp_act_bias": round(spearman(act, bias), 3),
            "sp_gate_norm_bias": round(spearman(g.norm(dim=1), bias), 3),
            "bias_pearson_dc_estimate": round(pearson(g @ dirs[i], bias), 3),
            "sp_act_true_mean_iso": round(spearman(act, iso), 3),
            "sp_act_true_mean_cov": round(spearman(act, full), 3),
            "sp_act_method": round(spearman(act, method_scores[i]), 3),
            "cov_top20_overlap_gate": round(float((top_cov.T @ top_gate).pow(2).sum() / 20), 3),
        })
        print(rows[-1], flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
