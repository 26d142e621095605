# The two commands of the README:
#   make run    set up what is missing, then run the main job (all notebooks, PRESET=default: prompts on the
#               shipped models/spkit-base; PRESET=scratch trains the units and uLM from zero in the run;
#               PRESET=full runs every clip and method to convergence, hours on a CPU)
#   make test   set up what is missing, then run the test suite
PY := .venv/bin/python
PRESET ?= default
RUN ?= runs/$(PRESET)
PYTEST_ARGS ?=

.PHONY: setup run test lint bench clean-runs

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m spkit run --preset $(PRESET) --out $(RUN)

test: setup
	bash scripts/test.sh $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check spkit tests bench

bench: setup
	bash bench/run_all.sh

clean-runs:
	rm -rf runs/
