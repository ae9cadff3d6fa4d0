# The two commands of README.md: `make demo` (the main job on real MNIST) and `make test`.
# Both create .venv and install what is missing. torch is installed first, pinned, so that pip
# takes the CPU build instead of a multi-GB CUDA one.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lethe-installed
TORCH ?= torch==2.13.0

.PHONY: demo test install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lethe demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf var runs .pytest_cache
