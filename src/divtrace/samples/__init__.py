"""Sample records and their readers/writers (JSONL, Parquet) and importers (lm-eval, lighteval)."""

from divtrace.samples.reader import ReadResult, read_samples, write_samples
from divtrace.samples.schema import DEFAULT_TASK, SampleRecord

__all__ = ["DEFAULT_TASK", "ReadResult", "SampleRecord", "read_samples", "write_samples"]
