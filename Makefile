# Two commands on a fresh machine:
#   make all DATA_DIR=/path/to/conll   # venv + install + the main job (spacy project run all)
#   make test                          # venv + install + the test suite
# Both create .venv and install what they need once (idempotent: reinstalls
# only when setup.py changed).
#
# Settings (make VAR=value, or environment variables):
#   DATA_DIR         folder (or URL base) holding conll2003/{train,dev,test}.txt and conll2000/{train,test}.txt
#   VARS             more project variables, e.g. VARS="--vars.task chunk --vars.max_epochs 5"
#   PROJECT          the project folder (default: this one)
#   PYTHON           the interpreter that creates the venv (default: python3)
#   TORCH_VERSION    default 2.13.0
#   TORCH_INDEX_URL  where pip finds torch; empty = pip's default index. A CPU-only
#                    build elsewhere: https://download.pytorch.org/whl/cpu; a CUDA
#                    build: https://download.pytorch.org/whl/cu126 (match your driver)
#   EXTRAS           spacy_mat's extras to install (default test,glove,ray; add trf, plots as needed)
#   PYTEST_ARGS      default: tests -q

PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?=
VARS ?=
PROJECT ?= .
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
EXTRAS ?= test,glove,ray
PYTEST_ARGS ?= tests -q

VENV_PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.spacy_mat-installed

.PHONY: all test install data-dir-set

# (checked before installing anything)
data-dir-set:
	@if [ -z "$(DATA_DIR)" ]; then \
	  echo "error: set DATA_DIR to the folder holding conll2003/{train,dev,test}.txt and conll2000/{train,test}.txt: make all DATA_DIR=/path/to/conll" >&2; \
	  exit 2; fi

all: data-dir-set $(INSTALLED)
	$(VENV_PY) -m spacy project run all $(PROJECT) --vars.data_dir "$(DATA_DIR)" $(VARS)

# pytest's exit code is passed on (5 = no tests collected fails too)
test: $(INSTALLED)
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

install: $(INSTALLED)

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(VENV_PY) setup.py
	$(VENV_PY) -m pip install -q --upgrade pip
	$(VENV_PY) -m pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX_URL),--index-url "$(TORCH_INDEX_URL)")
	$(VENV_PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(INSTALLED)
