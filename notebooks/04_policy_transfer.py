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
# # Policy transfer: prune once, reuse the policy at other ratios
#
# A PruneNet policy trained at one ratio can prune the same model at any other ratio without
# retraining. This notebook lays out train ratio (rows) against reuse ratio (columns) for each
# model and method with a policy: the diagonal holds runs whose policy was trained at that
# ratio, the rest runs that reused a saved policy (`policy_source` names it, and
# `policy_train_ratio` differs from `ratio_target`). One matrix per quality measure the runs
# hold: zero-shot average, WikiText-2 perplexity, and the mean KS distance between the original
# and pruned FFN1 spectra.
#
# **Reads** every complete run with a policy (and without recovery fine-tuning) under
# `runs_dir` (or in the wandb project) through `yopo.results.load_runs`; nothing is recomputed.
#
# **Regenerate the runs** (repository root):
# ```
# python src/run.py -m ratio=0.2,0.3 eval=default           # train policies
# python src/run.py -m transfer=from_0.3 eval=default       # reuse the 0.3 policy at other ratios
# ```
# **Writes** `04_policy_transfer.{csv,md}` (long form) and one
# `04_transfer_<model>_<method>_<measure>.{csv,md}` matrix per measure into `tables_dir`, and the
# matching heatmaps into `figures_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root

# %%
from yopo import results

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

# runs pruned by a policy, without recovery fine-tuning (it changes the model after the policy)
with_policy = results.policy_runs(runs)
long = results.transfer_table(runs)

notes = [loaded + f"; {len(with_policy)} with a policy, "
         f"{int(with_policy['policy_transferred'].sum())} of them reusing a saved one.",
         "Means over seeds of one variant, per evaluation protocol. Rows: the ratio the policy "
         "was trained at; columns: the ratio it pruned at."]
if with_policy.empty:
    notes.append("No runs with a policy (PruneNet) here: nothing to lay out.")
elif not with_policy["policy_transferred"].any():
    notes.append("No run reuses a policy yet: only the diagonal is filled. Regenerate with "
                 "`python src/run.py -m transfer=from_0.3`.")
note = results.save_table(long, tables_dir, "04_policy_transfer", notes)
long

# %%
matrices = results.transfer_matrices(runs)
protocols = sorted({protocol for (_, _, protocol, _) in matrices})
for (model, variant, protocol, measure), matrix in matrices.items():
    label = results.TRANSFER_MEASURES[measure]
    k = protocols.index(protocol)  # file names number the protocols; the note spells them out
    name = f"04_transfer_{model}_{variant}_{measure}" + (f"_protocol{k}" if k else "")
    shown = matrix.rename(columns=lambda r: f"reuse {r:g}").rename_axis(None, axis=1)
    results.write_table(shown.reset_index().rename(columns={"policy_train_ratio": "train ratio"}),
                        tables_dir, name, f"- {model} / {variant} ({protocol}): {label}; rows: "
                        "train ratio, columns: reuse ratio. " + notes[0])
    fig, ax = plt.subplots(figsize=(1.2 * matrix.shape[1] + 2.5, 1.0 * matrix.shape[0] + 1.8))
    sns.heatmap(matrix, annot=True, fmt=".3g", cmap="viridis", ax=ax, cbar_kws={"label": label})
    ax.set(xlabel="reuse ratio", ylabel="train ratio",
           title=f"{model} / {variant}" + (f" (protocol {k})" if len(protocols) > 1 else ""))
    fig.tight_layout()
    results.write_figure(fig, figures_dir, name)
    plt.show()
