# The two commands of the README, and the pieces they are made of.
#   make lab    bring up the whole swarm on a local lab of systemd containers
#   make test   run every test (what .ci/run calls)
#   make bench  the full load and chaos matrix against the lab, written into docs/benchmarks.md
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
export AISWARM_VENV := $(abspath $(VENV))

.PHONY: help bootstrap lab lab-down lab-status test lint sanity unit build arch molecule lab-test bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

bootstrap: ## Install what is missing: Docker engine, debootstrap, the virtualenv
	@bash lab/bootstrap.sh

lab: bootstrap ## Build the node image, start the lab nodes and run site.yml on them
	@$(VENV)/bin/python lab/lab.py up

lab-status: ## Show the lab nodes
	@$(VENV)/bin/python lab/lab.py status

lab-down: ## Remove the lab nodes and network (keeps the image and the caches)
	@$(VENV)/bin/python lab/lab.py down

test: bootstrap ## Run every test stage: lint, sanity, unit, build, arch, molecule, lab
	@bash tests/run.sh

lint sanity unit build arch molecule: bootstrap ## Run one test stage
	@bash tests/run.sh $@

lab-test: bootstrap ## Run the whole-swarm lab stage alone
	@bash tests/run.sh lab

bench: bootstrap ## Full load + every chaos scenario against the lab (~40 min), into docs/benchmarks.md
	@$(VENV)/bin/python lab/lab.py up
	@AISWARM_API_KEY="sk-$$(cat inventories/lab/.secrets/litellm_master_key)" \
	  $(VENV)/bin/python -m aiswarm_loadtest.bench --docs docs/benchmarks.md $(BENCH_ARGS)
