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
# # Zero-shot accuracy after pruning: model x ratio, methods side by side
#
# The paper's main table (LLaMA-2-7B, PruneNet against SliceGPT at 20 / 25 / 30 %): accuracy on
# PIQA, WinoGrande, HellaSwag, ARC-easy and ARC-challenge and their average, for every model and
# ratio we have runs of, with the paper's numbers in adjacent columns (`paper ...`; the paper's
# per-task numbers are not transcribed in `yopo.paper`, only averages).
#
# **Reads** every complete run (a run folder whose `metrics.json` exists) under `runs_dir`, or
# the finished runs of a wandb project, through `yopo.results.load_runs`; nothing is
# recomputed. Runs that reuse a policy trained at another ratio belong to notebook 04 and are
# left out. Phi-2 has its own notebook (02).
#
# **Regenerate the runs** (repository root; `eval=default` runs the five tasks):
# ```
# python src/run.py -m +experiment=paper_llama2_7b    # the paper's setting (hub access + GPU):
#     PruneNet and SliceGPT beside random (3 seeds), magnitude, activation,
#     expected_activation and the authors' algorithm (prunenet_reference)
# python src/run.py -m +experiment=smollm2_methods    # every method on the embedded SmolLM2
# python src/run.py -m +experiment=smollm2_methods eval=subset paths.runs_dir=results/runs/subset
#     # the same on 200 examples per task (a CPU-sized table, ~1.5 h on 2 cores)
# ```
# **Paired comparisons**: each run keeps every example's score (`example_scores.json`), so
# each variant's accuracy minus a reference's (the dense model, `random`, `activation`) is
# taken example by example, with a paired bootstrap 95 % interval per task and for the average
# (`yopo.results.paired_table`): far tighter than two means with separate standard errors.
#
# **Writes** `01_zeroshot.{csv,md}` (model x ratio x protocol), `01_zeroshot_runs.{csv,md}` (one
# row per run and task, with stderr) and `01_paired_<reference>.{csv,md}` into `tables_dir`.
# With no `runs_dir` and no runs of your own, the published records (`results/published/`)
# are read.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root
models = None       # models to show; None: every measured model but phi2, plus llama2_7b
references = ["dense", "random", "activation"]  # paired differences against each of these

# %%
from yopo import paper, results
from yopo.config import experiment_grid

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)

# %%
shown = models or sorted((set(runs["model"]) - {"phi2"}) | {"llama2_7b"})
# every method of the paper experiment's grid gets its columns, measured yet or not
grid_methods = experiment_grid("paper_llama2_7b")["method"]
table = results.zeroshot_table(runs, shown, grid_methods)
per_run = results.zeroshot_runs(runs, shown)

notes = [loaded + f"; models shown: {', '.join(shown)}.",
         "Accuracy in percent, mean over the seeds of one variant (`<variant> n` runs; a "
         "variant is a method with its options, named by the options in which its variants "
         "differ); rows by evaluation protocol; metrics as in the paper: "
         + ", ".join(f"{t} {m}" for t, m in paper.TASK_METRICS.items()) + ".",
         f"`paper ...` columns: {paper.CITATION}. The paper's ratio is the fraction of FFN "
         "neurons for PruneNet and of the hidden dimension for SliceGPT.",
         "Methods of `+experiment=paper_llama2_7b` (empty columns: not run yet): "
         + ", ".join(grid_methods) + "; random over 3 seeds."]
if per_run.empty:
    notes.append("No zero-shot results in these runs (they were made with eval=none): the "
                 "measured columns are empty. Rerun with eval=default.")
elif per_run["limit"].notna().any():
    notes.append(f"Subset evaluation (eval limit {per_run['limit'].max():g} per task): "
                 "not comparable with the paper's full sets.")
note = results.save_table(table, tables_dir, "01_zeroshot", notes)
results.write_table(per_run, tables_dir, "01_zeroshot_runs", note)
table

# %% [markdown]
# ## Is a variant better than the reference here? Paired differences on the same examples

# %%
paired = {ref: results.paired_table(runs, ref, shown) for ref in references}
for ref, differences in paired.items():
    results.write_table(differences, tables_dir, f"01_paired_{ref}", "\n".join([
        f"- {loaded}.",
        f"- Accuracy minus {ref}'s on the same examples, percentage points (each side the mean "
        "over its seeds), per task and for the five-task average; `low` / `high`: paired "
        "bootstrap 95 % interval (2,000 resamples of the examples, each task on its own); "
        "`decisive`: the average's interval excludes zero.",
        "- Runs made before per-example scores were kept are left out."]))
paired["random"] if "random" in paired else next(iter(paired.values()))
