# Two commands do all the set-up on a fresh machine:
#   make demo   - trains the CPU DCGAN twin (32 px) on the built-in toyfaces for a few minutes
#   make test   - runs the test suite
# Each creates .venv when it is missing. TORCH selects the torch build (the CPU wheel here).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
DEMO_STEPS ?= 4000

.PHONY: demo test bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/gankit train --preset dcgan-32-cpu --data toyfaces --runs runs \
		--set train.steps=$(DEMO_STEPS) --set train.sample_every=500 --set train.ckpt_every=1000

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m gankit.bench

clean-venv:
	rm -rf $(VENV)
