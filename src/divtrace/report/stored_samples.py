"""A run's stored samples as the report reads them: cell by cell from disk, never all at once.

The report needs, of the samples, only each cell's count of outputs whose thinking never closed and the texts of
the few drill-down prompts; holding every sample of a study (1.9 M outputs for ``olmo3-7b``) for that takes memory
in proportion to the whole study. :class:`StoredSamples` is iterated instead: each pass reads one (checkpoint,
task) at a time, and :meth:`StoredSamples.of_cells` reads only the cells asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from divtrace.runs.layout import RunLayout
from divtrace.samples import SampleRecord


class StoredSamples:
    """The stored samples of ``cells`` ((checkpoint, task) pairs, in order) of the run at ``layout``.

    Iterating yields every record, cell after cell, in the order :meth:`RunLayout.read_samples` gives them, reading
    each cell when it is reached (one cell in memory at a time); each iteration reads the files again.
    """

    def __init__(self, layout: RunLayout, cells: Sequence[tuple[str, str]]) -> None:
        self.layout = layout
        self.cells = tuple(cells)

    def __iter__(self) -> Iterator[SampleRecord]:
        """Every record of every cell, in cell order."""
        return self.of_cells(self.cells)

    def of_cells(self, wanted: Iterable[tuple[str, str]]) -> Iterator[SampleRecord]:
        """The records of the cells of ``wanted`` only (in this object's cell order; cells it lacks are skipped)."""
        chosen = set(wanted)
        for cell in self.cells:
            if cell in chosen:
                yield from self.layout.read_samples(*cell)
