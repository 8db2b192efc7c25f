#!/usr/bin/env bash
# Everything the GPU machine lacks for benchmarks/gpu_check.py, into two git-ignored folders that
# the device tool carries (nothing can be downloaded there; it has Python 3.12, torch 2.11,
# transformers 5.17, but no hydra-core, omegaconf or antlr4, and the data beside the checkout
# does not travel):
#   .whl/          wheels for Python 3.12, pinned to the versions of pyproject.toml / .venv
#   .device-data/  wikitext2/wiki.test.raw from the data dir (checked against its sha256 there)
# Run from the repository root:  bash scripts/prepare_device.sh
# Then, with the device tool: carry [".whl", ".device-data"] and the command it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${YOPO_DATA_DIR:-../shared/data}
rm -rf .whl .device-data && mkdir -p .whl .device-data/wikitext2
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
# hydra-core and omegaconf ship wheels; antlr4-python3-runtime 4.9.3 (omegaconf's parser) is a
# source distribution only: built here into a pure-Python wheel, which runs on any Python 3.
for pkg in hydra-core omegaconf; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp -d .whl "$pkg==$(version $pkg)"
done
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
cp "$DATA/wikitext2/wiki.test.raw" .device-data/wikitext2/
"$PY" -c "from yopo.data import data_file; data_file('.device-data', 'wikitext2/wiki.test.raw')"
du -ch .whl .device-data | tail -1
cat <<'CMD'
device command (carry [".whl", ".device-data"]):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 && python3 benchmarks/gpu_check.py --out $OUT --data-dir .device-data
CMD
