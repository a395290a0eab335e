# Two commands do all the set-up (see README.md):
#   make demo   - install everything into .venv and run the whole pipeline on the demo dataset
#   make test   - install everything into .venv and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.reface-installed
DATASET ?= demo

.PHONY: install demo eval test bench clean-results gpu notebooks install-py312 test-py312

# CPU install: torch is pinned by constraints-cpu.txt (torch==2.13.0, a CPU wheel on
# these machines; an unpinned torch would pull several GB of CUDA packages).
$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e '.[test,notebooks,cluster,browser]'
	$(VENV)/bin/reface check
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(MAKE) eval DATASET=demo

# Any dataset: make eval DATASET=ltcc DATA_ROOT=/data/LTCC_ReID
eval: $(STAMP)
	mkdir -p results/$(DATASET)
	$(VENV)/bin/papermill notebooks/eval.ipynb results/$(DATASET)/eval.ipynb -p dataset $(DATASET) \
		$(if $(DATA_ROOT),-p data_root $(DATA_ROOT),)

# Two workers (pytest-xdist; the notebook, Ray, browser and per-dataset eval tests keep to one
# worker each: tests/conftest.py worker_group). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) --durations=20

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
	reface install-gpu

# Colab as it ships: Python 3.12 with Colab's Jupyter stack and the packages ReFace shares
# with it (constraints-colab.txt: ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34, classic
# Notebook 6.5.7 with widgetsnbextension 3.6, numpy 2.0.2, pandas 2.2.2, ...) in $(VENV312).
# Installing it is the check that '.[colab]' accepts what Colab has. Its torch follows
# constraints-cpu.txt too; PyPI has no CPU build of it for 3.12, so this is the CUDA build
# (about 4.5 GB, runs on the CPU). tests/notebooks/test_browser_classic.py runs its classic Notebook
# server and kernel from here (REFACE_CLASSIC_PYTHON, else $(VENV312)/bin/python).
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$p"; break; }; done)
VENV312   ?= .venv312
PY312     := $(VENV312)/bin/python
STAMP312  := $(VENV312)/.reface-installed
export REFACE_CLASSIC_PYTHON ?= $(abspath $(PY312))
# The fast tests (about 2.5 min here): not the browser ones (`make test` runs both front
# ends; their files are not even collected here, where REFACE_REQUIRE_BROWSER=1 would fail
# on this venv's lack of JupyterLab and Playwright), nor the whole pipeline on every dataset
# layout (test_eval_datasets.py; the demo's eval.ipynb runs below, as README shows it), the
# custom-video runs (test_custom.py) or the Ray engine (not installed here).
PY312_PYTEST ?= -m "not browser" -p no:cacheprovider \
	--ignore=tests/notebooks/test_browser.py --ignore=tests/notebooks/test_browser_classic.py \
	--ignore=tests/notebooks/test_eval_datasets.py --ignore=tests/apps/test_custom.py \
	--ignore=tests/apps/test_cluster.py --ignore=tests/apps/test_cluster_first_use.py \
	--ignore=tests/notebooks/test_your_data.py tests
PY312_RESULTS ?= results/py312

$(STAMP312): pyproject.toml constraints-cpu.txt constraints-colab.txt
	@test -n "$(PYTHON312)" || { echo "no Python 3.12 found: make ... PYTHON312=/path/to/python3.12"; exit 1; }
	$(PYTHON312) -m venv $(VENV312)
	$(PY312) -m pip install -q --upgrade pip
	$(PY312) -m pip install -q -c constraints-cpu.txt -c constraints-colab.txt -e '.[test,colab]'
	$(VENV312)/bin/reface check
	touch $(STAMP312)

install-py312: $(STAMP312)

test-py312: $(STAMP312)
	$(PY312) -m pytest $(PYTEST_PARALLEL) $(PY312_PYTEST)
	mkdir -p $(PY312_RESULTS)
	REFACE_HOME=$${REFACE_HOME:-$(CURDIR)/.cache/reface-test} $(VENV312)/bin/papermill notebooks/eval.ipynb \
		$(PY312_RESULTS)/eval.ipynb -p dataset demo -p results_root $(PY312_RESULTS) --no-progress-bar
