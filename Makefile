# Shortcuts for dev.py, which needs nothing but Python (README: `python3 dev.py demo` / `python3 dev.py test`).
PYTHON ?= python3

.PHONY: demo test bench clean

demo:
	$(PYTHON) dev.py demo $(ARGS)

test:
	$(PYTHON) dev.py test $(ARGS)

bench:
	$(PYTHON) dev.py bench

clean:
	rm -rf .venv bench/.venv-classic test-output
