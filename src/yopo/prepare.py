"""`python -m yopo.prepare`: convert the embedded model once (idempotent), print where it is."""
from .config import compose
from .models import prepare_packaged_model

if __name__ == "__main__":
    cfg = compose()
    folder = prepare_packaged_model(cfg.model.package, f"{cfg.paths.cache_dir}/models/{cfg.model.name}")
    print(f"embedded model ready: {folder}")
