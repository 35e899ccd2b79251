# The two set-up commands: `make demo` and `make test`. Each creates .venv when it is missing and installs what
# it needs from the package registries (`make test` also installs the frameworks its tests compare against);
# only Python >= 3.11 and make are required.
#
# The tools of tests, lint and docs are PEP 735 dependency groups of pyproject.toml (`pip install --group test`),
# which need pip >= 25.1: every install below first brings the environment's pip to that (a no-op when it is).
# The frameworks are the user-facing extras (`.[keras,flax,...]`).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_MIN := pip>=25.1
FRAMEWORKS := keras,flax,haiku,equinox,plot,optax

.PHONY: demo test test-oldest test-versions lint bench docs clean

demo: $(VENV)/.installed
	$(BIN)/python examples/gpt2_small.py

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --durations=15

# The oldest supported versions (.ci/oldest.txt), in a virtual environment of their own; with `make test`, the
# newest that this Python installs.
test-oldest: .venv-oldest/.installed
	.venv-oldest/bin/python -m pytest -n auto

test-versions: test test-oldest

# pyright checks the integrations against the frameworks themselves, so lint installs them too (not torch).
lint: $(VENV)/.installed-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright

docs: $(VENV)/.installed-docs
	$(BIN)/python examples/plot_distributions.py --out docs/img/distributions.png
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/eager.py
	$(BIN)/python benchmarks/init_tree.py --small

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jinit needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet '$(PIP_MIN)'
	$(BIN)/python -m pip install --quiet -e '.[$(FRAMEWORKS)]' --group test --group docs
	@touch $@ $(VENV)/.installed $(VENV)/.installed-docs

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet '$(PIP_MIN)'
	$(BIN)/python -m pip install --quiet -e '.[plot]' --group docs
	@touch $@ $(VENV)/.installed

$(VENV)/.installed-lint: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet '$(PIP_MIN)'
	$(BIN)/python -m pip install --quiet -e '.[$(FRAMEWORKS)]' --group lint
	@touch $@ $(VENV)/.installed

.venv-oldest/.installed: pyproject.toml .ci/oldest.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "jinit needs Python >= 3.11")'
	$(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/python -m pip install --quiet --upgrade pip
	.venv-oldest/bin/python -m pip install --quiet -c .ci/oldest.txt -e '.[$(FRAMEWORKS)]' --group test --group docs
	@touch $@

clean:
	rm -rf $(VENV) .venv-oldest .pytest_cache .ruff_cache .hypothesis site docs/img dist
