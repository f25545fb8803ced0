"""``python -m divtrace.cli``: the same as the ``divtrace`` command."""

from divtrace.cli import main

main()
