# Quick start:  make demo   (set up, generate sample data, train and validate on it)
#               make test   (set up and run the test suite)
# `make` alone builds the Cython NMS extension with .venv's python if it exists
# (`make setup` also installs the hsrnet package, editable, into .venv).

PY ?= python3
VENV := .venv
VENV_PYTHON := $(abspath $(VENV))/bin/python
PYTHON ?= $(if $(wildcard $(VENV_PYTHON)),$(VENV_PYTHON),$(PY))
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: all nms setup test demo clean

all: nms

nms:
	$(MAKE) -C lib PYTHON=$(PYTHON)

$(STAMP): requirements.txt pyproject.toml setup.py
	test -x $(VENV_PYTHON) || $(PY) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install -q --upgrade pip
	$(VENV_PYTHON) -m pip install -q torch==$(TORCH_VERSION)
	$(VENV_PYTHON) -m pip install -q -r requirements.txt
	# the hsrnet package itself, editable (its NMS extension built in place)
	$(VENV_PYTHON) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)
	$(MAKE) -C lib PYTHON=$(VENV_PYTHON)

test: setup
	$(VENV_PYTHON) -m pytest -q tests

demo: setup
	$(VENV_PYTHON) tools/demo.py

clean:
	$(MAKE) -C lib clean
	rm -rf $(VENV)
