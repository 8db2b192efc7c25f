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
# # Throughput: dense against pruned, measured against ideal speedup
#
# The paper reports generation throughput rising from 11.96 to 20.74 tokens/s for LLaMA-2-7B at
# 30 %. Here: for every model, method and ratio, the measured speed of the dense and the pruned
# model (as the run's `throughput` record gives it, e.g. prefill and decode tokens/s per batch
# size) and the measured speedup against the ideal one, 1 / (1 - r f) with f the FFN share of
# the per-token cost.
#
# **Reads** every complete run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs`; nothing is measured or recomputed here (speed depends only on the
# width, so transferred-policy runs count too).
#
# **Regenerate the runs** (repository root; the dense and the pruned model are timed in the
# same process, interleaved):
# ```
# python src/run.py -m ratio=0.1,0.2,0.3 eval=default
# python src/run.py -m +experiment=paper_llama2_7b    # the paper's setting (hub access + GPU)
# ```
# **Writes** `03_throughput.{csv,md}` into `tables_dir` and `03_speedup.png` into `figures_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root

# %%
from yopo import paper, results

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

pairs = results.speedup_columns(runs)  # (measured, ideal) column pairs that hold values
table = results.throughput_table(runs)

notes = [loaded + ".", "Means over seeds of one variant; tokens/s and speedups as the runs "
         "recorded them. Speeds from different machines (`hardware`), `round_to` or inference "
         "layouts (`fuse_gate_up`) are separate rows, never pooled. "
         "`paper dense` / `paper pruned`: tokens/s, " + paper.CITATION + "."]
if not pairs:
    notes.append("No throughput measurements in these runs (eval=none, or throughput: null): "
                 "the speed columns are empty and no figure is drawn. Rerun with eval=default.")
note = results.save_table(table, tables_dir, "03_throughput", notes)
table

# %%
if pairs:
    groups = list(runs.groupby(["model", "variant", "hardware"]))
    colors = sns.color_palette(n_colors=len(groups))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4), squeeze=False,
                             sharey=True)
    for ax, (measured, ideal) in zip(axes[0], pairs):
        for color, ((model, variant, machine), group) in zip(colors, groups):
            means = group.groupby("ratio_target")[[c for c in (measured, ideal) if c]].mean()
            ax.plot(means.index, means[measured], marker="o", color=color,
                    label=f"{model} / {variant} ({machine})")
            if ideal:  # a marker too: with one ratio there is no line to draw
                ax.plot(means.index, means[ideal], linestyle="--", marker="x", color=color,
                        alpha=0.7, label=f"{model} / {variant} ({machine}), ideal")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set(xlabel="ratio (fraction removed)", title=results.speedup_label(measured))
    axes[0][0].set_ylabel("speedup (pruned / dense)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small")
    fig.tight_layout(rect=(0, 0.08 + 0.05 * ((len(labels) - 1) // 4), 1, 1))
    results.write_figure(fig, figures_dir, "03_speedup")
