"""`python -m yopo.prepare [model=<name>]`: convert a packaged model once (idempotent), print
where it is. The default is the embedded SmolLM2; `model=gemma3_270m` after `make setup-gemma`."""
import sys

from .config import compose
from .models import prepare_packaged_model

if __name__ == "__main__":
    cfg = compose(sys.argv[1:])
    folder = prepare_packaged_model(cfg.model, f"{cfg.paths.cache_dir}/models/{cfg.model.name}")
    print(f"{cfg.model.name} ready: {folder}")
