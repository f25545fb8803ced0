"""divtrace: find where output diversity collapses along a post-training lineage."""

__version__ = "0.1.0"
