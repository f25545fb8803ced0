"""What a study is: the lineage graph of checkpoints, the tasks, sampling, metrics and executor (``spec``), how a
study file or preset is read (``loading``), and the built-in presets (``presets``)."""

from divtrace.study.lineage import CheckpointNode, LineageGraph
from divtrace.study.loading import load_study, parse_study
from divtrace.study.presets import (
    PRESETS,
    QUICKSTART_LINEAGE,
    STARTER_STUDY,
    olmo3_7b_study,
    quickstart_study,
    small_quickstart_study,
)
from divtrace.study.spec import (
    IMPORTED_MODEL,
    UNKNOWN,
    CheckpointSpec,
    ExecutorSpec,
    RecordedSampling,
    SamplingSpec,
    StopPolicyName,
    Study,
    TaskSpec,
)

__all__ = [
    "IMPORTED_MODEL",
    "PRESETS",
    "QUICKSTART_LINEAGE",
    "STARTER_STUDY",
    "UNKNOWN",
    "CheckpointNode",
    "CheckpointSpec",
    "ExecutorSpec",
    "LineageGraph",
    "RecordedSampling",
    "SamplingSpec",
    "StopPolicyName",
    "Study",
    "TaskSpec",
    "load_study",
    "olmo3_7b_study",
    "parse_study",
    "quickstart_study",
    "small_quickstart_study",
]
