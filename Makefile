# The two commands of the README. Both create (first time) and reuse .venv.
.PHONY: demo test
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
