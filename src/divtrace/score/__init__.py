"""The score stage: the diversity metrics (``metrics``: the registry, the built-in metrics, the embedding store) and
the one scorer (``scorer``) that turns samples into per-prompt scores and per-cell summaries."""
