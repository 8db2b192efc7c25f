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
# # Three data regimes, two model families: what pruning without a dataset costs
#
# Every method by what it reads: **weights only** (`expected_activation`, `random`,
# `prunenet`, `magnitude`, ...), **self-generated text** (`activation_self`, `slicegpt_self`:
# the dense model samples its own calibration text; no dataset) and **calibration text**
# (`activation`, `slicegpt` on the held-out WikiText-2 slice). Per model, evaluation protocol and
# ratio: WikiText-2 perplexity and the five-task zero-shot average, each against `activation`
# on real calibration text (`ppl / activation`, `avg - activation`). The goal this table checks:
# a method that reads no external text within 1.1x of `activation`'s perplexity and no lower on
# the average, on both families.
#
# **Reads** every complete run under `runs_dir` (or a wandb project) through
# `yopo.results.load_runs`; nothing is recomputed. Rows sort by regime, then perplexity.
#
# **Regenerate the runs** (repository root; Gemma-3-270M needs `make setup-gemma`):
# ```
# python src/run.py -m +experiment=data_regimes paths.runs_dir=results/runs/subset
# ```
# **Writes** `09_data_regimes.{csv,md}` and `09_paired.{csv,md}` (each variant's zero-shot
# accuracy minus `activation`'s on the same examples, with paired bootstrap 95 % intervals) into
# `tables_dir`, and `09_data_regimes.png` (perplexity against `activation`'s, per method and
# ratio) into `figures_dir`.

# %% tags=["parameters"]
source = "local"    # local: the run folders; wandb: the wandb project below (wandb login)
project = "yopo"    # wandb project, or entity/project (used when source is wandb)
runs_dir = None     # None: results/runs under the repository root (or $YOPO_RUNS_DIR)
tables_dir = None   # None: results/tables under the repository root
figures_dir = None  # None: results/figures under the repository root
models = None       # models to show; None: every measured model
reference = "activation"  # the method every row is compared with (real calibration text)

# %%
import matplotlib.pyplot as plt

from yopo import results

runs, tables_dir, figures_dir, loaded = results.open_runs(source, runs_dir, project, tables_dir,
                                                          figures_dir)
table = results.regime_table(runs, models, [reference])
notes = [loaded + ".",
         f"ppl: WikiText-2 token perplexity; avg: five-task zero-shot average in percent; "
         f"`ppl / {reference}` and `avg - {reference}`: against {reference} on real "
         "calibration text at the same model, evaluation protocol and ratio (mean over seeds "
         "of one variant, `n` runs).",
         "Data regimes: weights only (no text), self-generated text (the dense model's own "
         "samples), calibration text (the held-out WikiText-2 slice)."]
if table.empty:
    notes.append("No evaluated runs yet: run the command in the header.")
else:
    notes.append("Evaluation protocols (the figure's panels): " + "; ".join(
        f"{i}: {p}" for i, p in enumerate(sorted(table["protocol"].unique()))) + ".")
note = results.save_table(table, tables_dir, "09_data_regimes", notes)
paired = results.paired_table(runs, reference, models)
results.write_table(paired, tables_dir, "09_paired", "\n".join([
    f"- {loaded}.",
    f"- Zero-shot accuracy minus {reference}'s on the same examples (percentage points, each "
    "side the mean over its seeds); `low` / `high`: paired bootstrap 95 % interval; "
    "`decisive`: the five-task average's interval excludes zero."]))
table

# %%
if not table.empty:
    panels = list(table.groupby(["model", "protocol"], sort=True))
    protocols = sorted(table["protocol"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, ((model, protocol), rows) in zip(axes[0], panels):
        ratios = sorted(rows["ratio"].unique())
        methods = list(dict.fromkeys(rows.sort_values(["data regime", "variant"])["variant"]))
        width = 0.8 / len(ratios)
        for i, ratio in enumerate(ratios):
            at = rows[rows["ratio"] == ratio].set_index("variant").reindex(methods)
            ax.bar([m + i * width for m in range(len(methods))], at[f"ppl / {reference}"],
                   width, label=f"r = {ratio:g}")
        ax.axhline(1.1, color="k", ls="--", lw=1, label=f"1.1 x {reference}")
        ax.set_yscale("log")
        ax.set_xticks([m + width * (len(ratios) - 1) / 2 for m in range(len(methods))])
        ax.set_xticklabels(methods, rotation=30, ha="right")
        ax.set_ylabel(f"perplexity / {reference}'s")
        ax.set_title(f"{model}, protocol {protocols.index(protocol)}")  # spelled out in the table
        ax.legend(fontsize=8)
    fig.tight_layout()
    print(results.write_figure(fig, figures_dir, "09_data_regimes"))
