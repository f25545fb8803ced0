"""Checks a command runs before any work, so that nothing is computed and then lost to a problem that was visible at
the start (an unwritable ``--out``, a mistyped input path, an empty ``--metrics``, an unknown model or metric)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from divtrace.errors import DivtraceError, ModelLoadError


def writable_directory(path: Path, flag: str = "--out") -> None:
    """Raise unless ``path`` is a directory divtrace can write in, or one it can create (nothing is created here).

    The test writes and removes a probe file in ``path`` or in its nearest existing ancestor, so read-only mounts
    and permissions are caught the same way, for root too.
    """
    if path.exists() and not path.is_dir():
        raise DivtraceError(f"{flag} {path}: is a file, not a directory; give a directory (it is created if missing)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DivtraceError(f"{flag} {path}: cannot be created, because {existing} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".divtrace-probe-"):
            pass
    except OSError as err:
        where = "" if existing == path else f" (it would be created in {existing})"
        raise DivtraceError(f"{flag} {path}: cannot write there{where}: {err.strerror or err}") from None


def existing_inputs(paths: Sequence[Path | str], what: str = "input") -> None:
    """Raise naming every path of ``paths`` that does not exist (``--skip-invalid`` skips bad records, never a
    mistyped path)."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise DivtraceError(f"no such {what} file or directory: {', '.join(missing)}")


def metric_list(text: str | None, flag: str = "--metrics") -> list[str] | None:
    """The metric names of a comma-separated ``flag`` value; None when the flag was not given.

    Raises when it was given but names nothing (``--metrics ""``), or names a metric that does not exist.
    """
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise DivtraceError(f"{flag} is empty: name at least one metric (divtrace metrics lists them)")
    from divtrace.score.metrics import metric_names

    known = metric_names()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise DivtraceError(f"{flag}: unknown metric(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def adapter_reference(adapter: str, backend: str, flag: str = "--adapter") -> None:
    """Raise when ``adapter`` cannot be applied: the openai backend (its server serves adapters), an unknown
    ``quickstart:`` adapter, or a path that is not a PEFT adapter directory (checked without loading anything)."""
    from divtrace.generate.backends.options import OPENAI_ADAPTER_REFUSAL
    from divtrace.generate.models import resolve_adapter

    if backend == "openai":
        raise DivtraceError(f"{flag}: {OPENAI_ADAPTER_REFUSAL}")
    try:
        resolve_adapter(adapter)
    except ModelLoadError as err:
        raise DivtraceError(f"{flag} {adapter}: {err}") from None


def model_reference(model: str, flag: str = "--model") -> None:
    """Raise when ``model`` cannot be a model: an unknown ``quickstart:`` name, or a path (``./``, ``/``, ``~``,
    ``.gguf``) that does not exist. Hub ids are left to the loader (checking them needs the network)."""
    from divtrace.generate.models import QUICKSTART_MODELS, QUICKSTART_PREFIX

    if model.startswith(QUICKSTART_PREFIX):
        name = model.removeprefix(QUICKSTART_PREFIX)
        if name not in QUICKSTART_MODELS:
            known = ", ".join(QUICKSTART_PREFIX + known_name for known_name in QUICKSTART_MODELS)
            raise DivtraceError(f"{flag} {model}: unknown quickstart model; known: {known}")
        return
    looks_like_path = model.startswith((".", "/", "~")) or model.endswith(".gguf")
    if looks_like_path and not Path(model).expanduser().exists():
        raise DivtraceError(f"{flag} {model}: no such file or directory")
