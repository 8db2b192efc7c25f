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
# # Phi-2: zero-shot accuracy after pruning
#
# The paper's Phi-2 table in the form of notebook 01: at 30 % PruneNet keeps a five-task
# average of 61.05 against SliceGPT's 51.99, and recovery fine-tuning (RFT) lowers PruneNet's
# to 58.30. Measured columns fill in when Phi-2 runs exist; until then the table holds the
# paper's numbers only, and says so.
#
# **Reads** every complete `phi2` run under `runs_dir` (or in the wandb project) through
# `yopo.results.load_runs`; nothing is recomputed. Transferred-policy runs are left to notebook 04.
#
# **Regenerate the runs** (repository root; needs hub access for microsoft/phi-2 and a GPU):
# ```
# python src/run.py -m +experiment=paper_phi2
# ```
# **Writes** `02_<model>_zeroshot.{csv,md}` and `02_<model>_zeroshot_runs.{csv,md}` into
# `tables_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root
model = "phi2"      # the model config name this table is about
experiment = "paper_phi2"  # the experiment whose grid's methods get columns

# %%
from yopo import paper, results
from yopo.config import experiment_grid

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)

# %%
measured = runs[runs["model"] == model]
# every method of the paper experiment's grid gets its columns, measured yet or not
grid_methods = experiment_grid(experiment)["method"]
table = results.zeroshot_table(runs, [model], grid_methods)
per_run = results.zeroshot_runs(runs, [model])

notes = [loaded + f"; {len(measured)} of them are {model} runs.",
         "Accuracy in percent, mean over seeds; metrics as in the paper: "
         + ", ".join(f"{t} {m}" for t, m in paper.TASK_METRICS.items()) + ".",
         f"`paper ...` columns: {paper.CITATION}.",
         f"Methods of `+experiment={experiment}` (empty columns: not run yet): "
         + ", ".join(grid_methods) + "; random over 3 seeds."]
if measured.empty:
    notes.append(f"No {model} runs yet: this table holds the paper's numbers only. Regenerate "
                 "them with `python src/run.py -m +experiment=paper_phi2`.")
elif per_run.empty:
    notes.append(f"The {model} runs have no zero-shot results (eval=none); rerun with "
                 "eval=default.")
elif per_run["limit"].notna().any():
    notes.append(f"Subset evaluation (eval limit {per_run['limit'].max():g} per task): "
                 "not comparable with the paper's full sets.")
note = results.save_table(table, tables_dir, f"02_{model}_zeroshot", notes)
results.write_table(per_run, tables_dir, f"02_{model}_zeroshot_runs", note)
table
