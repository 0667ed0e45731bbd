# The two commands of the README, each setting itself up first (scripts/setup.sh is idempotent).
VENV ?= .venv
export GLOPRO_VENV := $(abspath $(VENV))

.PHONY: setup demo test
setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/glopro demo

test: setup
	bash scripts/install_test_tools.sh
	$(VENV)/bin/python -m pytest
