"""The plan of a study run, before anything runs: per (checkpoint, task) rows (``rows``), the generated-token cost
model (``cost``), measured and assumed generation rates (``throughput``) and the plan as one summary with estimates
(``summary``: what ``divtrace run --dry-run`` prints)."""
