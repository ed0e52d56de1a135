# hostmon — see README.md. Every target sets up what it needs itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SYSTEM_PACKAGES := influxdb victoria-metrics podman runc debootstrap python3-firewall faketime collectd-core chromium chromium-driver

.PHONY: help venv venv-runtime system-packages run test test-python test-molecule lint bench demo demo-destroy clean

help:
	@echo "make run            run the agent and the API on the embedded SQLite store (foreground)"
	@echo "make test           install what the tests need and run the whole suite (pytest + molecule)"
	@echo "make lint           ruff, mypy, yamllint, ansible-lint"
	@echo "make bench          agent cost, spool replay, API latency, embedded store and memory soak benchmarks"
	@echo "make demo           a local container fleet deployed with playbooks/site.yml"

# Two stamps: `make run` needs only the runtime dependencies (psutil, bottle, waitress,
# influxdb-client); the test, lint and deploy extras come with the targets that use them.
venv-runtime: $(VENV)/.runtime
venv: $(VENV)/.installed

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[test,lint,deploy]'
	touch $@

# As root on Debian, install the servers and tools the integration tests and Molecule need.
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "not root on Debian; missing system packages:$$missing (integration tests will skip outside CI)"; fi

run: venv-runtime
	$(BIN)/hostmon run

test: venv system-packages
	$(BIN)/python -m pytest
	$(MAKE) test-molecule

test-python: venv system-packages
	$(BIN)/python -m pytest

test-molecule: venv system-packages
	bash molecule/run-scenarios.sh

lint: venv
	$(BIN)/ruff check monitor tests
	$(BIN)/ruff format --check monitor tests
	$(BIN)/mypy
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint

bench: venv system-packages
	$(BIN)/python -m tests.bench

demo: venv system-packages
	bash molecule/demo.sh up

demo-destroy: venv
	bash molecule/demo.sh down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
