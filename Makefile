# The two commands of the quick start:
#   make demo   -- set up .venv (first time) and run the main job: a small end-to-end study + report
#   make test   -- set up .venv (first time) and run the test suite (what CI runs)
VENV ?= .venv

.PHONY: setup demo test test-slow bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/seqgap demo

test: setup
	$(VENV)/bin/python -m pytest

test-slow: setup
	$(VENV)/bin/python -m pytest -m slow

bench: setup
	bash benchmarks/run.sh

clean:
	rm -rf seqgap_runs seqgap_demo .pytest_cache test-artifacts
