"""The benchmark of issue #3: the event-driven badge pipeline against the sequential design.

`python -m bench` (or `make bench`) starts the real stack (Redis, the database, daphne, the
push worker), drives it with WebSocket clients in separate processes, and writes a Markdown
report and PNG plots to bench/results/. See bench/README.md.
"""
