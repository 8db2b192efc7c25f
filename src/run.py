"""The main job. From the repository root:

    python src/run.py                                  # SmolLM2, PruneNet, ratio 0.3
    python src/run.py model=phi2 ratio=0.3
    python src/run.py -m ratio=0.1,0.2,0.3 method=prunenet,prunenet_reference

Each run writes metrics.json (and policy / pruned_model) into its folder under results/runs/.
"""
import shutil
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from yopo.config import register_resolvers
from yopo.errors import YopoError
from yopo.identity import identify
from yopo.pipeline import existing_run, run, summary

register_resolvers()


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        complete = existing_run(run_dir, identify(cfg), cfg.save_model)
        if complete and cfg.skip_existing:
            print(f"skipping {run_dir}: it holds a complete run of this config (run_id "
                  f"{complete}); skip_existing=false redoes it")
            return
        metrics = run(cfg, run_dir)
    except YopoError as err:
        # Nothing of ours was written yet, or only complete artefacts: drop Hydra's bookkeeping
        # so the failed attempt leaves no run folder that looks like a result.
        if not any(p.name not in (".hydra", "run.log") for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
            runs_root = Path(cfg.paths.runs_dir).resolve()
            for parent in run_dir.resolve().parents:  # and the model/method folders it made
                if parent == runs_root or not parent.is_relative_to(runs_root):
                    break
                if any(parent.iterdir()):
                    break
                parent.rmdir()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        # Hydra's sweeper keeps a crashed job's exception and raises it only after the last job
        # of the sweep: say which run failed, and why, while the sweep goes on.
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            print(f"error: run {run_dir} failed (the sweep goes on and exits non-zero at its "
                  f"end):\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        raise
    print(summary(metrics))
    print(f"results in {run_dir}")


if __name__ == "__main__":
    main()
