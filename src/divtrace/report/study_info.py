"""What the report says about a study: :class:`StudyInfo`, typed, built from a :class:`~divtrace.study.Study`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from divtrace.score.settings import PACKAGED_MINILM, NLISettings
from divtrace.study import CheckpointSpec, RecordedSampling, SamplingSpec, Study

#: The title of a study that has no name.
UNNAMED_STUDY = "divtrace study"


@dataclass(frozen=True)
class StudyInfo:
    """What the report says about the study: its name, description and caveat, checkpoints, tasks (with where
    their samples came from), metrics, models and sampling. Only ``name`` is required; what is left unset is left
    out of the report (or falls back to the tables: metrics and tasks in the order the analysis has them)."""

    name: str
    description: str = ""
    caveat: str | None = None
    checkpoints: tuple[CheckpointSpec, ...] = ()
    #: Task name -> where its prompts (or samples) came from, in the order the report shows the tasks.
    tasks: Mapping[str, str] = field(default_factory=dict)
    #: The metrics in the order the report shows them.
    metrics: tuple[str, ...] = ()
    #: The sentence embedder as the study names it (an id or its settings); None: not stated.
    embedder: str | Mapping[str, Any] | None = None
    nli_model: str | NLISettings | None = None
    sampling: SamplingSpec | RecordedSampling | None = None

    @classmethod
    def of(cls, study: Study, origins: Mapping[str, str]) -> StudyInfo:
        """The description of ``study`` whose tasks came from ``origins`` (task name -> origin); the embedder is
        the packaged one when the study names none."""
        embedder = study.model_dump(mode="json")["embedder"]
        return cls(
            name=study.name,
            description=study.description,
            caveat=study.caveat,
            checkpoints=tuple(study.checkpoints),
            tasks=dict(origins),
            metrics=tuple(study.metric_names()),
            embedder=embedder or PACKAGED_MINILM,
            nli_model=study.nli_model,
            sampling=study.sampling,
        )

    @property
    def title(self) -> str:
        """The study's name, or :data:`UNNAMED_STUDY` when it has none."""
        return self.name or UNNAMED_STUDY
