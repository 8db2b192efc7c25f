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
# # Compression time per model and method
#
# PruneNet compresses LLaMA-2-7B in about 15 minutes (916 s in the paper), calibration-free; a
# reused policy skips training altogether. For every model and method: the time spent pruning
# (`compression_seconds`: scoring or policy learning plus slicing), the part spent training a
# policy, recovery fine-tuning where a run did it, and the whole run, pooled over ratios and
# seeds and split by device, by whether the policy was reused and by the RFT setting.
#
# **Reads** every complete run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs`; nothing is timed here.
#
# **Regenerate the runs** (repository root):
# ```
# python src/run.py -m +experiment=smollm2_methods eval=none   # every method, prune only
# python src/run.py -m +experiment=paper_llama2_7b             # the paper's setting (GPU)
# ```
# **Writes** `05_compression_time.{csv,md}` into `tables_dir` and `05_compression_time.png`
# into `figures_dir`.

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

table = results.compression_table(runs)

notes = [loaded + ".", "Seconds; mean (std, min, max) over the runs of each row, ratios "
         "pooled. `paper compression_s`: PruneNet on LLaMA-2-7B, " + paper.CITATION + "."]
if runs.empty:
    notes.append("No runs here: the table is empty and no figure is drawn.")
note = results.save_table(table, tables_dir, "05_compression_time", notes)
table

# %%
if not runs.empty:
    shown = runs.assign(run=runs["model"] + " / " + runs["hardware"].fillna("?")
                        + runs["policy_transferred"].map({True: " (reused policy)", False: ""})
                        + runs["rft"].map(lambda rft: f" + RFT {rft}" if rft else ""))
    fig, ax = plt.subplots(figsize=(7, 0.5 * shown["run"].nunique() * shown["variant"].nunique()
                                    + 2))
    sns.barplot(data=shown, y="run", x="compression_seconds", hue="variant", errorbar=None, ax=ax)
    ax.set(xlabel="compression seconds (mean over ratios and seeds)", ylabel="")
    fig.tight_layout()
    results.write_figure(fig, figures_dir, "05_compression_time")
