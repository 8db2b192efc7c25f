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
# # With vs without recovery fine-tuning
#
# The paper finds that PruneNet gains little from recovery fine-tuning (RFT: LoRA on
# WikiText-2 after pruning; LLaMA-2-7B at 20/25/30 %: 61.67/58.63/55.45 without, 62.34/60.05/
# 57.08 with; Phi-2 at 30 %: 61.05 without, 58.30 with). Every run with `rft` other than `none`
# scores its pruned model before and after fine-tuning in the same run, so for each method the
# gain is one subtraction: the five-task zero-shot average (percent) and WikiText-2 perplexity,
# before and after, with the paper's PruneNet numbers beside them.
#
# **Reads** every complete run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs`; runs without RFT are not shown here (notebook 01 has them).
#
# **Regenerate the runs** (repository root):
# ```
# python src/run.py -m +experiment=smollm2_rft                     # PruneNet and random at 0.3
# python src/run.py -m +experiment=smollm2_rft method=activation   # any other method
# python src/run.py -m +experiment=paper_llama2_7b rft=lora_r32_8000x1024   # the paper (GPU)
# ```
# **Writes** `08_recovery.{csv,md}` into `tables_dir` and `08_recovery.png` into `figures_dir`.

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

table = results.recovery_table(runs)
notes = [loaded + ".", "`avg`: five-task zero-shot average in percent (the metrics of "
         "notebook 01); `ppl`: WikiText-2 token perplexity; before/after: the same run scored "
         "before and after recovery fine-tuning; mean over seeds. `eval limit`: examples per "
         "task when the evaluation used a subset (empty = the full sets). Paper: " +
         paper.CITATION + "."]
if table.empty:
    notes.append("No runs with recovery fine-tuning here: run the commands above.")
note = results.save_table(table, tables_dir, "08_recovery", notes)
table

# %%
if not table.empty:
    labels = [f"{m} {r:g} {model}" for model, m, r in
              zip(table["model"], table["method"], table["ratio"])]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(table) + 2))
    for ax, (before, after, xlabel, log) in zip(axes, [
            ("avg before", "avg after", "zero-shot average (%)", False),
            ("ppl before", "ppl after", "WikiText-2 perplexity (log)", True)]):
        y = range(len(table))
        ax.scatter(table[before], y, label="before RFT", marker="o")
        ax.scatter(table[after], y, label="after RFT", marker="s")
        for i, (b, a) in enumerate(zip(table[before], table[after])):
            ax.annotate("", xy=(a, i), xytext=(b, i), arrowprops={"arrowstyle": "->"})
        ax.set(yticks=list(y), yticklabels=labels, xlabel=xlabel)
        if log:
            ax.set_xscale("log")
    axes[0].legend(loc="best")
    fig.tight_layout()
    results.write_figure(fig, figures_dir, "08_recovery")
