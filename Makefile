# Two commands do all the set-up on a fresh machine:
#   make demo   - trains the CPU DCGAN twin (32 px) on the built-in toyfaces for a few minutes
#   make test   - runs the test suite (make test-other: the same on this CPU's other numeric path)
# Each creates .venv when it is missing. TORCH selects the torch build (the CPU wheel here); changing
# it reinstalls torch. The tests' numeric environment: THREADS (torch and OMP threads in each test
# process) and PRECISION (GANKIT_PRECISION: auto = bf16 where the CPU has it natively, fp32 or bf16).
# JOBS: test processes side by side (pytest-xdist; JOBS=1 runs them in one process, as with THREADS=2).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
JOBS ?= 2
THREADS ?= 1
PRECISION ?= auto
PY := $(VENV)/bin/python
DEMO_STEPS ?= 4000
# one stamp per torch requirement, so a new TORCH= reinstalls
STAMP := $(VENV)/.installed-$(shell printf '%s' '$(TORCH)' | tr -c 'A-Za-z0-9._-' _)
# worksteal: a worker that runs out takes queued tests from the other (the slow tests are uneven)
XDIST := $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist worksteal,)
TEST_ENV := GANKIT_TEST_THREADS=$(THREADS) OMP_NUM_THREADS=$(THREADS) GANKIT_PRECISION=$(PRECISION)

# make quality: the best CPU preset on CelebA-64 for QUALITY_MINUTES, scored on held-out faces
CELEBA ?= ../shared/data/celeba
QDATA ?= data/celeba64
QUALITY_MINUTES ?= 60
QUALITY_PRESET ?= dcgan-k4-64-cpu
QUALITY_SET ?= --set train.ema=0.999

.PHONY: demo test test-other bench quality clean-venv

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found: install Python 3.11+ (apt-get install python3 python3-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { echo "make: $(PYTHON) cannot create a virtual environment: install python3-venv (apt-get install python3-venv)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/gankit train --preset dcgan-32-cpu --data toyfaces --runs runs \
		--set train.steps=$(DEMO_STEPS) --set train.sample_every=500 --set train.ckpt_every=1000

test: $(STAMP)
	@$(TEST_ENV) $(PY) -m gankit.env
	$(TEST_ENV) $(PY) -m pytest -q $(XDIST)

# the other numeric path of this CPU: fp32 on AVX2 kernels where bf16 is native, forced bf16 where not
test-other: $(STAMP)
	@$(TEST_ENV) env $$($(PY) -m gankit.env --other-path) $(PY) -m gankit.env
	$(TEST_ENV) env $$($(PY) -m gankit.env --other-path) $(PY) -m pytest -q $(XDIST)

bench: $(STAMP)
	$(PY) -m gankit.bench

quality: $(STAMP)
	test -f $(QDATA)/meta.json || $(VENV)/bin/gankit prepare celeba $(CELEBA) --res 64 --out $(QDATA)
	test -f $(QDATA)/features/featnet.json || $(VENV)/bin/gankit train-features $(QDATA)
	$(VENV)/bin/gankit train --preset $(QUALITY_PRESET) --data "$(QDATA)[:9000]" --runs runs/quality --quiet \
		--set train.max_minutes=$(QUALITY_MINUTES) --set train.steps=10000000 $(QUALITY_SET) \
		--set metric=fd-celeba-attr10k --set "metric_ref=$(QDATA)[9000:]" --set metric_every=3000
	$(VENV)/bin/gankit eval "$$(ls -d runs/quality/*-$(QUALITY_PRESET)-* | tail -1)" \
		--metric fd-celeba-attr10k --metric kd-celeba-attr10k --ref "$(QDATA)[9000:]"

clean-venv:
	rm -rf $(VENV)
