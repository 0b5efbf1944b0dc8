# Quick start:  make demo   (set up, generate sample data, train and validate on it)
#               make test   (set up and run the test suite)
# `make` alone builds the Cython NMS extension with .venv's python if it exists.

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

$(STAMP): requirements.txt
	test -x $(VENV_PYTHON) || $(PY) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install -q --upgrade pip
	$(VENV_PYTHON) -m pip install -q torch==$(TORCH_VERSION)
	$(VENV_PYTHON) -m pip install -q -r requirements.txt
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
