"""The search page served by the Flow's own HTTP gateway (see `flow_gateway.py` and docs/ui.md).

`static/` holds the page (HTML, JS, CSS): it ships with the package and loads
nothing from outside the Flow.
"""
