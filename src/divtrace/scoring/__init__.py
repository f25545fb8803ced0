"""The scoring pipeline: samples in, per-prompt scores and summaries out."""
