# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Calibration-free pruning: the sweep, the ablation, per-layer sensitivity
#
# `method=expected_activation` scores FFN neurons from the weights alone (no text, no
# activations) under a Gaussian input model whose mean, the residual stream's constant "DC"
# part, is estimated from the weights; `docs/calibration_free.md` explains why weight norms and
# the spectral criterion fail on SmolLM2 and what each ingredient does. This notebook shows
# 1. the sweep: WikiText-2 perplexity, zero-shot average and parameters of every method per
#    model and ratio, with each method's perplexity relative to the calibrated `activation`
#    baseline and to `random` (the goal: beat random, reach 1.2x of activation at 0.2);
# 2. the ablation on the calibration slice (tuning data, never the evaluation text): which
#    ingredient buys how much;
# 3. per-layer sensitivity: perplexity when only one layer is pruned, and how well the method's
#    scores rank neurons by their measured activity, layer by layer.
#
# **Reads** every complete run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs` for the sweep, and the calibration-free experiment's CSVs in
# `experiment_dir` (`ablation_calibration.csv`, `tuning_calibration.csv`,
# `layer_sensitivity.csv`, `layer_diagnostics.csv`; `experiments/calibration_free/README.md`).
#
# **Regenerate the runs** (repository root):
# ```
# python src/run.py -m +experiment=smollm2_methods     # every method, expected_activation too
# python src/run.py -m +experiment=smollm2_methods eval=subset paths.runs_dir=results/runs/subset
#     # the same on 200 examples per task (a CPU-sized table, ~1.5 h on 2 cores)
# python experiments/calibration_free/evaluate.py --part calibration --ratios 0.2 \
#     --out experiments/calibration_free/results/ablation_calibration.csv \
#     --runs <label>=<method>[,<override>...]
# python experiments/calibration_free/layer_sensitivity.py --rules random act expected_activation \
#     --chunks 2
# python experiments/calibration_free/capture.py && \
#     python experiments/calibration_free/diagnostics.py
# ```
# **Writes** `07_sweep`, `07_ablation` and `07_layer_sensitivity` (`.csv`, `.md`) into
# `tables_dir` and `07_layer_sensitivity.png` into `figures_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root
experiment_dir = None  # None: experiments/calibration_free/results under the repository root

# %%
from pathlib import Path

from yopo import paper, results

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)
experiment_dir = (Path(experiment_dir) if experiment_dir else results.DEFAULT_TABLES_DIR.parents[1]
                  / "experiments" / "calibration_free" / "results")

# %% [markdown]
# ## 1. The sweep

# %%
sweep = results.regime_table(runs, references=["activation", "random"])
notes = [loaded + ".", "ppl: WikiText-2 token perplexity; avg: five-task zero-shot average "
         "in percent (metrics of notebook 01); mean over seeds (`n` runs). `ppl / activation`: "
         "the experiment's goal is at most 1.2 at ratio 0.2 for a calibration-free method, and "
         "`avg - activation` within 1 point; `ppl / random` below 1 at every ratio.",
         "Ratios are fractions of FFN neurons (of the hidden size for slicegpt): compare "
         "`params M`, not the ratio, across methods. " + paper.CITATION + "."]
if sweep.empty:
    notes.append("No runs here: run the first command above.")
results.save_table(sweep, tables_dir, "07_sweep", notes)
sweep

# %% [markdown]
# ## 2. Ablation on the calibration slice
#
# Rows in the order they were run. Labels starting with `+` add one ingredient to the previous
# `+` row (`x previous`); the others change one thing of the method's default of their time (the
# `overrides` column holds every value that differs from today's defaults). `random` is the
# mean (and range) over its seeds.

# %%
ablation_file = experiment_dir / "ablation_calibration.csv"
ablation = results.ablation_table(results.experiment_csv(ablation_file, keep_default_na=False))
results.save_table(ablation, tables_dir, "07_ablation", [
    f"From {ablation_file.name}: WikiText-2 token perplexity on the held-out calibration slice "
    "(512-token chunks), SmolLM2-135M; the evaluation text is never used for these choices."
    if not ablation.empty else
    f"No ablation here: {ablation_file} does not exist (the evaluate.py commands above)."])
ablation

# %% [markdown]
# ## 3. Per-layer sensitivity
#
# Left: perplexity when only layer l loses the ratio's share of its FFN neurons (every other
# layer dense), for random neurons, the activation oracle (calibration activations; it uses
# data and serves only as a reference) and the method's scores. Right: Spearman correlation per
# layer between a neuron's measured output size E|h_j| ||W_out[:, j]|| and its weight norm, its
# effective gate bias, and the method's score.

# %%
import matplotlib.pyplot as plt

sensitivity_file = experiment_dir / "layer_sensitivity.csv"
diagnostics_file = experiment_dir / "layer_diagnostics.csv"
sensitivity = results.experiment_csv(sensitivity_file)
diagnostics = results.experiment_csv(diagnostics_file)
per_layer = results.layer_table(sensitivity, diagnostics)
results.save_table(per_layer, tables_dir, "07_layer_sensitivity", [
    f"Per layer of SmolLM2 from {sensitivity_file.name} (perplexity on calibration chunks, one "
    f"layer pruned at a time) and {diagnostics_file.name} (activity statistics on 2,048 "
    "calibration tokens: they explain, the method never reads them).",
    "sp_act_*: Spearman correlation between measured neuron output size and a statistic; "
    "sp_act_method: the method's score; sp_act_true_mean_cov: the same Gaussian score with the "
    "measured input mean and covariance (what a perfect input model would reach)."]
    + ([] if not per_layer.empty else ["No per-layer CSVs here: run the last two commands."]))

if not per_layer.empty:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    if not sensitivity.empty:
        dense_ppl = sensitivity["ppl_dense"].iloc[0]
        names = {"act": "activation oracle (uses data)"}
        for rule, of_rule in sensitivity.groupby("rule"):
            axes[0].plot(of_rule["layer"], of_rule["ppl"], marker=".",
                         label=names.get(rule, rule))
        axes[0].axhline(dense_ppl, color="grey", linestyle=":", label="dense")
        axes[0].set(yscale="log", xlabel="layer pruned alone",
                    ylabel="perplexity (calibration chunks)",
                    title=f"ratio {sensitivity['ratio'].iloc[0]:g} in one layer")
        axes[0].legend(fontsize=8)
    if not diagnostics.empty:
        for column in ("sp_act_gate_norm", "sp_act_bias", "sp_act_method",
                       "sp_act_true_mean_cov"):
            if column in diagnostics:
                axes[1].plot(diagnostics["layer"], diagnostics[column], marker=".", label=column)
        axes[1].axhline(0, color="grey", linewidth=0.5)
        axes[1].set(xlabel="layer", ylabel="Spearman with measured output size",
                    title="what ranks neurons, per layer")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    results.write_figure(fig, figures_dir, "07_layer_sensitivity")
per_layer
