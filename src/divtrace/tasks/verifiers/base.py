"""The Verifier interface: check sampled outputs against a task's reference data, one verdict per output."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one output.

    Attributes:
        correct: whether the output is correct for the task.
        extracted: the answer taken from the output (a number, a LaTeX expression, a code block...), or None
            when nothing could be extracted.
        detail: a short reason, for people reading the verdicts ("no final answer", "timeout after 10 s",
            "AssertionError", "strict: 2/3 instructions followed"...); None when there is nothing to add.
        extra: verifier-specific facts (for IFEval: ``strict``/``loose`` results per instruction).
    """

    correct: bool
    extracted: str | None
    detail: str | None = None
    extra: dict[str, Any] | None = None


class Verifier(ABC):
    """Checks outputs against references; never raises because of what an output contains.

    A hostile or malformed output is an incorrect verdict, not an exception: only a broken *reference* (bad task
    data) may raise, with a message saying which field is wrong.
    """

    #: Registry name (``gsm8k``, ``math``, ``humaneval``...).
    name: ClassVar[str]

    @abstractmethod
    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per ``(outputs[i], references[i])``, in order.

        Batched so that verifiers can work in parallel (code runs in several sandboxes at once). ``references[i]``
        is the task's gold data for the prompt that ``outputs[i]`` answers (see each verifier for its keys).
        """

    def verify(self, output: str, reference: dict[str, Any]) -> Verdict:
        """The verdict for one output."""
        return self.verify_batch([output], [reference])[0]


_VERIFIERS: dict[str, type[Verifier]] = {}


def register_verifier(cls: type[Verifier]) -> type[Verifier]:
    """Class decorator: make ``cls`` available as ``create_verifier(cls.name)``; names must be unique."""
    if cls.name in _VERIFIERS and _VERIFIERS[cls.name] is not cls:
        raise ValueError(f"verifier {cls.name!r} is already registered")
    _VERIFIERS[cls.name] = cls
    return cls


def create_verifier(name: str, **options: Any) -> Verifier:
    """A new verifier by registry name (options go to its constructor); KeyError lists the known names."""
    from divtrace.tasks import verifiers  # noqa: F401  (registers the built-in verifiers)

    if name not in _VERIFIERS:
        raise KeyError(f"unknown verifier {name!r}; known: {', '.join(sorted(_VERIFIERS))}")
    return _VERIFIERS[name](**options)


def verifier_names() -> list[str]:
    """Registered verifier names, sorted."""
    from divtrace.tasks import verifiers  # noqa: F401

    return sorted(_VERIFIERS)
