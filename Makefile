# The README's two commands: `make demo` and `make test`. Both create a project-local
# virtual environment on first use and reuse it afterwards (the stamp file tracks the
# dependency files, so a change to them reinstalls).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?=

.PHONY: venv demo test clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build where there is no CUDA (torch==2.13.0 here),
	# so no later dependency can pull a multi-GB CUDA build in on its own.
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
