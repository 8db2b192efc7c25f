"""lm-eval task YAMLs that read the local copies of the paper's benchmarks (see yopo.eval.zeroshot).

Each `<task>.yaml` includes lm-eval's own config of that task (prompt, choices, metrics stay
lm-eval's) and overrides only where the documents come from: `custom_dataset` points at a loader
in `local_data.py`, which reads and checksums the files of the data dir and reshapes them into the
fields lm-eval's config expects. The data dir reaches the loaders at run time through the
TaskManager's metadata, so nothing here names a path.
"""
