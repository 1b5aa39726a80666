# The two commands of the README (both create, first time, and reuse .venv), and the edit loop's tests.
.PHONY: demo test test-fast
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
test-fast:   # every test but those marked slow (a Flow, a subprocess, a browser, a wheel build, a whole evaluation)
	bash scripts/test.sh -m "not slow"
