"""The one reader of results, and the writer of the tables and figures made from them
(notebooks use `from yopo import results`).

- `schema`: a run's record (its metrics.json) as one row of the loader's frame, and as a wandb
  summary and back;
- `cells`: what may share a table cell (variant, protocol, machine);
- `sources`: the run folders under a runs folder, or a wandb project -> the same frame
  (`load_runs`);
- `tables`: the notebooks' tables, pure functions of that frame;
- `paired`: differences to a reference on the same examples, with paired bootstrap intervals;
- `report`: writing tables and figures, and the line that says where their runs came from;
- `published`: the committed records behind the README's tables, and those tables.
"""
from ..identity import EXAMPLES_FILE, METRICS_FILE
from .paired import paired_interval, paired_table, read_examples
from .report import (DEFAULT_FIGURES_DIR, DEFAULT_TABLES_DIR, describe_source, open_runs,
                     output_dirs, provenance, save_table, write_figure, write_table)
from .schema import (COLUMNS, WANDB_SUBDIR, ResultsError, frame, is_complete, record_from_summary,
                     run_row, summary_from_record)
from .sources import (PUBLISHED_DIR, configured_runs_dir, experiment_csv, layer_ks, load_runs,
                      load_spectra_for, run_folders, wandb_run_id)
from .tables import (TRANSFER_MEASURES, ablation_table, compression_table, distinct_runs,
                     eval_protocol, evaluated_runs, layer_table, policy_runs, recovery_table,
                     regime_table, speedup_columns, speedup_label, throughput_table,
                     transfer_matrices, transfer_table, zeroshot_runs, zeroshot_table)

__all__ = [
    "COLUMNS", "DEFAULT_FIGURES_DIR", "DEFAULT_TABLES_DIR", "EXAMPLES_FILE", "METRICS_FILE",
    "PUBLISHED_DIR", "ResultsError", "TRANSFER_MEASURES", "WANDB_SUBDIR", "ablation_table",
    "compression_table", "configured_runs_dir", "describe_source", "distinct_runs",
    "eval_protocol", "evaluated_runs", "experiment_csv", "frame", "is_complete", "layer_ks",
    "layer_table", "load_runs", "load_spectra_for", "open_runs", "output_dirs", "paired_interval",
    "paired_table", "policy_runs", "provenance", "read_examples", "record_from_summary",
    "recovery_table", "regime_table", "run_folders", "run_row", "save_table", "speedup_columns",
    "speedup_label", "summary_from_record", "throughput_table", "transfer_matrices",
    "transfer_table", "wandb_run_id", "write_figure", "write_table", "zeroshot_runs",
    "zeroshot_table"]
