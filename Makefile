# Two commands do all the set-up (see README.md):
#   make demo   - install everything into .venv and run the whole pipeline on the demo dataset
#   make test   - install everything into .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reface-installed
DATASET ?= demo

.PHONY: install demo eval test bench clean-results gpu notebooks

# CPU install: torch is pinned by constraints-cpu.txt (torch==2.13.0, a CPU wheel on
# these machines; an unpinned torch would pull several GB of CUDA packages).
$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[test,notebooks,cluster,browser]'
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

# After editing a notebook (in Jupyter, or its notebooks/*.py pair): pair, re-run it on the
# demo, keep only the outputs nbval compares (docs/NOTEBOOKS.md).
NOTEBOOKS := download enrich_gallery infer visualise eval custom_video
STRIP_KEYS := metadata.papermill cell.metadata.papermill cell.metadata.execution
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS:%=notebooks/%.ipynb)
	for nb in $(NOTEBOOKS); do \
		$(VENV)/bin/papermill notebooks/$$nb.ipynb notebooks/$$nb.ipynb --cwd . --no-progress-bar || exit 1; \
	done
	$(VENV)/bin/nbstripout --keep-count --extra-keys "$(STRIP_KEYS)" $(NOTEBOOKS:%=notebooks/%.ipynb)
	$(VENV)/bin/jupytext --sync $(NOTEBOOKS:%=notebooks/%.ipynb)

clean-results:
	rm -rf results

# GPU install into the *current* environment (conda env from environment.yml, or Colab,
# where a CUDA torch is already installed and is kept). The onnxruntime-gpu build must match
# torch's CUDA major (PyPI: 1.19-1.26 for CUDA 12, 1.27+ for CUDA 13): runtime.py picks it
# (--gpu-requirement prints it), swaps it in, and --check fails if its CUDA provider does not load.
gpu:
	pip install -e '.[notebooks]'
	python -m reface_utils.runtime --install-gpu
