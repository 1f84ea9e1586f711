# LTB entry points. `make up` prepares this machine (idempotent, quick when nothing changed),
# `make test` lints and runs the tests, `make demo` deploys an example lab.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
# ansible-playbook, ansible-lint and the modules they start find the venv's tools first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Lab used by `make demo` and `make clean-labs`.
LAB ?= examples/ospf-triangle.lab.yml
# The portal that `make up` starts (roles/platform_portal) and where it keeps its state.
PORTAL ?= https://$(shell hostname -f 2>/dev/null || hostname)
PORTAL_STATE ?= /var/lib/ltb/portal
# Python code checked by ruff: those of these directories that exist.
PY_DIRS := $(wildcard ltb plugins tests bench jobs store portal)
ANSIBLE_LINT_PATHS := $(wildcard playbooks roles molecule)

.PHONY: help up bootstrap setup test lint demo clean-labs restart-jobs

help:
	@echo "make up          bootstrap the venv and collections, then run playbooks/site.yml"
	@echo "make test        make up, lint, then run the tests"
	@echo "make lint        ruff and ansible-lint"
	@echo "make demo        make up, then deploy $(LAB); print the portal's address and login"
	@echo "make clean-labs  remove the lab deployed by make demo (LAB=...)"
	@echo "make restart-jobs  restart the rq workers, the scheduler and the portal (after a code change)"

up: bootstrap setup

bootstrap:
	@scripts/bootstrap.sh

setup: bootstrap
	$(VENV)/bin/ansible-playbook playbooks/site.yml

test: up
	$(MAKE) lint
	$(VENV)/bin/pytest --durations=25 tests/

lint:
ifneq ($(PY_DIRS),)
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
endif
	$(VENV)/bin/ansible-lint --offline $(ANSIBLE_LINT_PATHS)

demo: up
	$(VENV)/bin/ansible-playbook -i inventory/ -i $(LAB) playbooks/deploy.yml
	@$(VENV)/bin/python -m ltb reach $(LAB)
	@echo "Portal: $(PORTAL) (API documentation: $(PORTAL)/docs)"
	@echo "Log in as admin; the password (in $(PORTAL_STATE)/admin_password) is:"
	@cat $(PORTAL_STATE)/admin_password

clean-labs:
	$(VENV)/bin/ansible-playbook -i inventory/ -i $(LAB) playbooks/remove.yml

restart-jobs: bootstrap
	$(VENV)/bin/ansible-playbook playbooks/site.yml -e platform_jobs_restart=true -e platform_portal_restart=true
