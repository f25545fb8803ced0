"""The ``divtrace`` command line: one module per command (the catalog commands ``lineages``, ``tasks``, ``metrics``
and ``init`` share :mod:`.catalog`), registered on :data:`app` (see :mod:`.app`), all run
under the one error handler of :mod:`.errors`; checks that run before work are in :mod:`.checks`, progress in
:mod:`.progress`, consoles and table output in :mod:`.console`."""

from divtrace.cli import analyze, catalog, generate, judge, lab, report, run, score, verify  # noqa: F401  (register the commands)
from divtrace.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. The libraries' own progress bars are turned off first: tqdm reads
    ``TQDM_DISABLE`` once, when it is imported (task data loading imports it before any progress display)."""
    from divtrace.cli.progress import quiet_library_bars

    quiet_library_bars()
    app()
