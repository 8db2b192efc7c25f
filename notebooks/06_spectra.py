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
# # Singular-value spectra of FFN1: original against pruned
#
# PruneNet keeps the rows of each layer's FFN1 matrix that preserve its singular-value
# spectrum. Every run saves both spectra (`spectra.safetensors`: before and after pruning,
# and their Kolmogorov-Smirnov distance per layer), whatever the method, so methods can be
# judged on the same footing: the ECDF of the original and the pruned spectra for chosen
# layers, and the KS distance of every layer for each method.
#
# **Reads** every complete run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs`, and each run's saved spectra through `yopo.results`; runs made
# before spectra were recorded are skipped (rerun them with `skip_existing=false`). Nothing is
# recomputed.
#
# **Regenerate the runs** (repository root):
# ```
# python src/run.py -m +experiment=smollm2_methods eval=none   # every method on SmolLM2
# ```
# **Writes** `06_ks_per_layer.{csv,md}` into `tables_dir`, and `06_ks_per_layer.png` and
# `06_spectra_ecdf_<model>.png` into `figures_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root
layers = None       # layers whose ECDFs are drawn; None: first, middle and last
ratio = None        # the ratio whose methods are compared in the ECDFs; None: the largest

# %%
from yopo import results

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from yopo.spectra import ecdf_figure

ks = results.layer_ks(runs)
notes = [loaded + f"; {ks['run_dir'].nunique()} of them saved spectra.",
         "KS: two-sample Kolmogorov-Smirnov statistic between the singular values of the "
         "original and the pruned FFN1 matrix of each layer (0 = same distribution)."]
if ks.empty:
    notes.append("No spectra saved in these runs: nothing to draw. Rerun them (they save "
                 "spectra.safetensors) with skip_existing=false.")
results.save_table(ks.rename(columns={"ratio_target": "ratio"}), tables_dir, "06_ks_per_layer",
                   notes)
ks.pivot_table(index=["model", "method", "ratio_target", "policy_transferred"],
               columns="layer", values="ks") if not ks.empty else ks

# %%
trained = ks[ks["policy_transferred"].eq(False)]  # reused policies: notebook 04
if not trained.empty:
    models = sorted(trained["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        sns.lineplot(data=trained[trained["model"] == model], x="layer", y="ks", hue="method",
                     style="ratio_target", markers=True, errorbar=None, ax=ax)
        ax.set(title=model, ylabel="KS(original, pruned)")
    fig.tight_layout()
    results.write_figure(fig, figures_dir, "06_ks_per_layer")

# %%
for model in sorted(trained["model"].unique()):
    of_model = trained[trained["model"] == model]
    at = ratio if ratio is not None else of_model["ratio_target"].max()
    chosen = (of_model[of_model["ratio_target"].round(6) == round(at, 6)]
              .sort_values(["method", "seed"]).drop_duplicates("method"))
    if chosen.empty:
        print(f"{model}: no run with spectra at ratio {at:g}")
        continue
    spectra = {row.method: results.load_spectra_for(row.run_dir) for row in chosen.itertuples()}
    original = next(iter(spectra.values())).dense  # the same dense model for every method
    fig = ecdf_figure(original, {m: s.pruned for m, s in spectra.items()}, layers,
                      ks={m: s.ks for m, s in spectra.items()}, title=f"{model}, ratio {at:g}")
    results.write_figure(fig, figures_dir, f"06_spectra_ecdf_{model}")
    display(fig)
