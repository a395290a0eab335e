# Two commands do all the set-up (see README.md):
#   make demo   - install everything into .venv and run the whole pipeline on the demo dataset
#   make test   - install everything into .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reface-installed
DATASET ?= demo

.PHONY: install demo eval test bench clean-results gpu

# CPU install: torch is pinned by constraints-cpu.txt (torch==2.13.0, a CPU wheel on
# these machines; an unpinned torch would pull several GB of CUDA packages).
$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[test,browser]'
	$(PY) -m reface_utils.runtime --check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(MAKE) eval DATASET=demo

# Any dataset: make eval DATASET=ltcc DATA_ROOT=/data/LTCC_ReID
eval: $(STAMP)
	mkdir -p results/$(DATASET)
	$(VENV)/bin/papermill notebooks/eval.ipynb results/$(DATASET)/eval.ipynb -p dataset $(DATASET) \
		$(if $(DATA_ROOT),-p data_root $(DATA_ROOT),)

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_reid.py
	$(PY) benchmarks/bench_retrieval.py

clean-results:
	rm -rf results

# GPU install into the *current* environment (conda env from environment.yml, or Colab,
# where a CUDA torch is already installed and is kept).
gpu:
	pip install -e '.[test]'
	pip uninstall -y onnxruntime
	pip install --no-deps --force-reinstall 'onnxruntime-gpu>=1.17'
	python -m reface_utils.runtime --check
