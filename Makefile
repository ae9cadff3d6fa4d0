# The two commands of README.md: `make demo` (the main job on real MNIST) and `make test`.
# Both create .venv and install what is missing. torch is installed first, pinned, so that pip
# takes the CPU build instead of a multi-GB CUDA one.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lethe-installed
TORCH ?= torch==2.13.0

.PHONY: demo test install lint clean bench bench-scaling bench-intake bench-gpu bench-forget-gap

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

# Issue 3: the paper's MNIST experiment, the reference LiSSA and retraining, in one run
# (runs/bench/paper_mnist.{json,md,png}; 10 min measured at the paper's 50 epochs, EPOCHS=10 to shorten).
EPOCHS ?= 50
bench: $(STAMP)
	$(PY) benchmarks/paper_mnist.py --epochs $(EPOCHS)

# Forget-set accuracy of the unlearned model against a retrain, over random draws, per training
# length: why the demo trains 3 epochs (runs/bench/forget_gap.{json,md}; 9.3 min measured on 2 cores).
FORGET_GAP ?=
bench-forget-gap: $(STAMP)
	$(PY) benchmarks/forget_gap.py $(FORGET_GAP)

# Cost of one step against n, p and m (runs/bench/scaling.{json,md,png}); SCALING=--full for all
# points at the paper's depth.
SCALING ?= --quick
bench-scaling: $(STAMP)
	$(PY) benchmarks/scaling.py $(SCALING)

# Issue 4: accepted deletion requests per second on PostgreSQL (runs/bench/intake.{json,md}).
# Needs a PostgreSQL server where it may create and drop a database (BENCH_PG) and, for the
# production broker, Redis (BENCH_REDIS; a database index of its own: it is purged at the end).
BENCH_PG ?= $(LETHE_TEST_POSTGRES_URL)
BENCH_REDIS ?=
INTAKE ?= --seconds 20 --clients 64 --api-workers 2
bench-intake: $(STAMP)
	$(PY) benchmarks/intake.py --database-url "$(BENCH_PG)" $(if $(BENCH_REDIS),--broker-url "$(BENCH_REDIS)") $(INTAKE)

# Issue 7: AllCNN, ResNet-18 and the MLP trained briefly, 1000 samples unlearned at the paper's
# LiSSA settings, and retrained (runs/bench/gpu.json): on LETHE_DEVICE (default auto, a GPU when
# one is visible); sized to finish within 5 minutes on an H200. GPU_BENCH="--slice cpu" runs the
# CPU slice (61 s measured on one core).
GPU_BENCH ?=
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu.py $(GPU_BENCH)

clean:
	rm -rf var runs .pytest_cache
