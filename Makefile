# nmc-deploy: two commands do everything on a fresh machine with Python 3.11.
#   make demo   set up .venv (once) and run the whole pipeline on the embedded digits data set
#   make test   set up .venv (once) and run the test suite
# The environment is rebuilt only when constraints.txt or pyproject.toml change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.nmc-deploy-installed
OUT    ?= demo_out
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast clean-venv install-check

venv: $(STAMP)

$(STAMP): constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU wheel; anything else pulls CUDA packages.
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt numpy scipy networkx asteval scikit-learn h5py matplotlib \
		click nir nirtorch tqdm pytest hypothesis
	# Interop tests (issue 4) build graphs with the tools themselves: snnTorch declares no
	# dependencies and rockpool only numpy/scipy, so both install with the others' pins.
	$(PIP) install -c constraints.txt snntorch rockpool
	# NeuroBench (issue 11, tests only: tests/models/test_op_counts_neurobench.py) declares old
	# torch/tonic/numba pins; its metric code needs only torch and snntorch, so no deps.
	$(PIP) install --no-deps -c constraints.txt neurobench
	# sinabs declares nir<=1.0.4 and samna (its DynapCNN backend); its layers need only torch
	# and numpy, which are above: install it without its metadata's deps.
	$(PIP) install -c constraints.txt pbr
	$(PIP) install --no-deps -c constraints.txt sinabs
	# spikingjelly's metadata pulls a CUDA torch and tensorboard; its neurons and NIR exporter
	# need torch, numpy, nir and loguru only.
	$(PIP) install --no-deps -c constraints.txt loguru spikingjelly
	# Lava declares Python <3.11 and old torch pins: install without its metadata's deps
	# (their real deps are above); nmc_deploy.simulate.lava.lava311 makes it import on 3.11.
	$(PIP) install --no-deps --ignore-requires-python -c constraints.txt lava-nc lava-dl
	# norse 1.1.0 is an sdist whose metadata says 0.0.0, so pip refuses it by name:
	# download the pinned file, then install the file itself (no deps: it names torchvision).
	rm -rf $(VENV)/.norse && $(PIP) download --no-deps --no-binary :all: -d $(VENV)/.norse norse==1.1.0
	$(PIP) install --no-deps --no-build-isolation $(VENV)/.norse/norse-1.1.0.tar.gz
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nmc-deploy demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not lava" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# `pip install .` into a fresh venv (the pinned stack from the package index; no Lava, no
# test tools), then the README's commands outside the repository (docs/architecture.md).
FRESH ?= /tmp/nmc-deploy-fresh
install-check: $(STAMP)
	rm -rf $(FRESH) && $(PYTHON) -m venv $(FRESH)/venv
	$(FRESH)/venv/bin/python -m pip install -q torch==2.13.0
	$(FRESH)/venv/bin/python -m pip install -q -c constraints.txt .
	mkdir -p $(FRESH)/work && cd $(FRESH)/work && $(CURDIR)/$(BIN)/python \
		$(CURDIR)/examples/snntorch_digits.py snn --epochs 1 && \
		$(FRESH)/venv/bin/nmc-deploy compile snn/snn.nir --convention snntorch \
			--target loihi2 -o build && \
		$(FRESH)/venv/bin/nmc-deploy simulate build --input snn/spikes.npy \
			--labels snn/labels.npy && \
		$(FRESH)/venv/bin/nmc-deploy report build
