# qtsafe: the targets operators type. Override on the VPS, e.g.
#   make quality-gate PYTHON=/opt/quantum/venvs/ai-engine/bin/python CUTOVER=2026-01-10T05:40:00Z
VENV        ?= .venv
BOOT_PYTHON ?= python3
PYTHON      ?= $(VENV)/bin/python
QTSAFE      ?= $(PYTHON) -m qtsafe
TORCH_SPEC  ?= torch==2.13.0
CUTOVER     ?= auto
REDIS_URL   ?=
MODEL       ?=
DATASET_ARGS ?=
PYTEST_ARGS ?= -n 2

# Only a REDIS_URL given to make overrides qtsafe's own settings (qtsafe.toml, QTSAFE_REDIS_URL).
REDIS_FLAG   = $(if $(REDIS_URL),--redis-url $(REDIS_URL))
# make itself exits 2 for any failing recipe, so each target prints qtsafe's own exit code (0/2/3) last.
# Scripts that branch on 3 (COLLECTED/WAIT) should call qtsafe (or the ops/ shims) directly.
RUN          = rc=0; $(QTSAFE) $(1) || rc=$$?; echo "qtsafe exit code: $$rc"; exit $$rc

BASE_DIR    ?= $(CURDIR)
UNIT_DIR    ?= /etc/systemd/system

.PHONY: install-systemd help install test lint demo feature-sanity quality-gate quality-gate-collection scoreboard bench \
        build-patchtst-dataset prereqs prereqs-test chaos demo-canary

help:
	@echo "make install                  venv in $(VENV) with qtsafe and its test extras"
	@echo "make demo                     install, then simulated telemetry -> sanity, both gates, scoreboard (no Redis)"
	@echo "make demo-canary              install, then the whole canary loop in demo/canary-sandbox (stand-in systemctl, no root)"
	@echo "make test                     install, then ruff + mypy + the whole test suite (needs redis-server, systemd-analyze)"
	@echo "make lint                     ruff over src tests bench scripts ops, mypy over src/qtsafe"
	@echo "make chaos                    only the fault-injection suite (tests/chaos), with its ledger"
	@echo "make feature-sanity           qtsafe feature-sanity --after \$$CUTOVER"
	@echo "make quality-gate-collection  qtsafe quality-gate --mode collection --after \$$CUTOVER (exit 3 = collected)"
	@echo "make quality-gate             qtsafe quality-gate --mode canary --after \$$CUTOVER (exit 0 = pass)"
	@echo "make scoreboard               qtsafe scoreboard --after \$$CUTOVER"
	@echo "make build-patchtst-dataset   qtsafe build-dataset \$$DATASET_ARGS (synthetic data by default)"
	@echo "make bench                    read and monitor-tick benchmarks (1,000,000 entries, local redis-server)"
	@echo "make install-systemd          monitor service, watchdog service and timer (PYTHON, BASE_DIR, UNIT_DIR)"
	@echo "make prereqs / prereqs-test   check Python >= 3.11 with venv (and redis-server, systemd-analyze for tests)"
	@echo "make help                     this list"

# The first second of `make demo` / `make test`: one line naming what to apt-get install, before any download.
prereqs:
	@bash scripts/prereqs.sh $(BOOT_PYTHON) demo

prereqs-test:
	@bash scripts/prereqs.sh $(BOOT_PYTHON) test

$(VENV)/.installed: pyproject.toml
	@bash scripts/prereqs.sh $(BOOT_PYTHON) demo
	$(BOOT_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch first, from the CPU build: the project's range accepts it, so pip does not fetch a CUDA build.
	$(VENV)/bin/pip install --quiet $(TORCH_SPEC)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: prereqs-test install
	$(VENV)/bin/ruff check src tests bench scripts ops
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) --cov=qtsafe --cov-branch --cov-report=term

lint: install
	$(VENV)/bin/ruff check src tests bench scripts ops
	$(VENV)/bin/mypy

chaos: prereqs-test install
	$(VENV)/bin/python -m pytest tests/chaos $(PYTEST_ARGS)

demo: prereqs install
	PYTHON=$(PYTHON) bash scripts/demo.sh

demo-canary: prereqs install
	PYTHON=$(PYTHON) bash scripts/demo_canary.sh

feature-sanity:
	@$(call RUN,feature-sanity --after "$(CUTOVER)" $(REDIS_FLAG))

quality-gate-collection:
	@$(call RUN,quality-gate --mode collection --after "$(CUTOVER)" $(REDIS_FLAG) $(if $(MODEL),--model $(MODEL)))

quality-gate:
	@$(call RUN,quality-gate --mode canary --after "$(CUTOVER)" $(REDIS_FLAG) $(if $(MODEL),--model $(MODEL)))

scoreboard:
	@$(call RUN,scoreboard --after "$(CUTOVER)" $(REDIS_FLAG))

build-patchtst-dataset:
	@$(call RUN,build-dataset $(DATASET_ARGS))

bench: install
	$(PYTHON) bench/bench_gate.py
	$(PYTHON) bench/bench_monitor.py

install-systemd:
	bash scripts/install_systemd.sh "$(abspath $(PYTHON))" "$(BASE_DIR)" "$(UNIT_DIR)"
