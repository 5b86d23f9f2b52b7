# Two commands do all the set-up on a fresh machine:
#   make demo   - trains the CPU DCGAN twin (32 px) on the built-in toyfaces for a few minutes
#   make test   - runs the test suite
# Each creates .venv when it is missing. TORCH selects the torch build (the CPU wheel here).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
DEMO_STEPS ?= 4000

# make quality: the best CPU preset on CelebA-64 for QUALITY_MINUTES, scored on held-out faces
CELEBA ?= ../shared/data/celeba
QDATA ?= data/celeba64
QUALITY_MINUTES ?= 60
QUALITY_PRESET ?= dcgan-64-cpu
QUALITY_SET ?= --set train.ema=0.999

.PHONY: demo test bench quality clean-venv

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

quality: $(VENV)/.installed
	test -f $(QDATA)/meta.json || $(VENV)/bin/gankit prepare celeba $(CELEBA) --res 64 --out $(QDATA)
	test -f $(QDATA)/features/featnet.json || $(VENV)/bin/gankit train-features $(QDATA)
	$(VENV)/bin/gankit train --preset $(QUALITY_PRESET) --data "$(QDATA)[:9000]" --runs runs/quality --quiet \
		--set train.max_minutes=$(QUALITY_MINUTES) --set train.steps=10000000 $(QUALITY_SET) \
		--set metric=fd-celeba-attr10k --set "metric_ref=$(QDATA)[9000:]" --set metric_every=3000
	$(VENV)/bin/gankit eval "$$(ls -d runs/quality/*-$(QUALITY_PRESET)-* | tail -1)" \
		--metric fd-celeba-attr10k --metric kd-celeba-attr10k --ref "$(QDATA)[9000:]"

clean-venv:
	rm -rf $(VENV)
