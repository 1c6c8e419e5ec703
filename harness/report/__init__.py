"""Reports: `harness report DIR` renders Pass@k curves, AUC tables and training diagnostics.

load.py reads the results layout (harness.core.results) into DataFrames, tables.py aggregates over seeds
(harness.core.metrics), plots.py and html.py render, build.py writes one experiment, cli.py is the command,
fake.py writes realistic fake results for tests and benchmarks.
"""
