"""Executors run the stages of a study: ``local`` (this process, the default) and ``ray`` (a Ray cluster)."""
