"""A run directory belongs to one study: the one its ``study.yaml`` names, made by one command.

:func:`check_run_directory` is called before anything in a run directory is written (``study.yaml`` included, by
:func:`~divtrace.executors.driver.run_study`, :func:`~divtrace.study.imported.import_samples` and ``divtrace run``
before it loads task data): a run of another study (another ``name``), or of the same name made by the other
command (``divtrace analyze``'s imported samples vs ``divtrace run``'s generated ones), is refused, naming both
studies and the directory. An edited study of the same name is the same study: the run goes on and redoes what
changed (its stages' keys say what).
"""

from __future__ import annotations

from typing import Any

from divtrace.errors import DivtraceError
from divtrace.runs.layout import RunLayout
from divtrace.study.spec import IMPORTED_MODEL, Study
from divtrace.yaml_files import read_yaml_mapping

#: The commands that make a run directory, by whether its checkpoints' samples are imported.
MADE_BY = {False: "divtrace run", True: "divtrace analyze"}


def of_imported_samples(study: Study) -> bool:
    """Whether ``study`` describes imported samples (every checkpoint's model is
    :data:`~divtrace.study.spec.IMPORTED_MODEL`), as ``divtrace analyze`` makes them."""
    return _imported([checkpoint.model for checkpoint in study.checkpoints])


def made_by(study: Study) -> str:
    """The command whose run directories hold ``study``: ``divtrace analyze`` for imported samples, ``divtrace
    run`` otherwise."""
    return MADE_BY[of_imported_samples(study)]


def check_run_directory(layout: RunLayout, study: Study) -> None:
    """Refuse to run ``study`` in ``layout`` when its ``study.yaml`` holds another study; reads only.

    Nothing is refused when there is no ``study.yaml`` (a new run directory) or it names this study, made by the
    same command (edited or not).

    Raises:
        DivtraceError: ``study.yaml`` names another study, or this one made by the other command (naming both and
            the directory); or it is not a study file.
    """
    if not layout.study_file.exists():
        return
    frozen = read_yaml_mapping(
        layout.study_file,
        missing="not found",
        not_a_mapping=f"not a divtrace study; is {layout.root} a run directory? Give the run another directory",
    )
    name, maker, new_maker = frozen.get("name"), MADE_BY[_imported(_models(frozen))], made_by(study)
    if name == study.name and maker == new_maker:
        return
    if maker == new_maker:
        why = f"{layout.root} is the run directory of study {name!r}, not of study {study.name!r}"
    else:
        why = (
            f"{layout.root} is the run directory of study {name!r}, made by {maker}; {new_maker} cannot run study "
            f"{study.name!r} in it"
        )
    raise DivtraceError(
        f"{why}: a run directory holds one study. Give study {study.name!r} its own directory (--out), or delete "
        f"{layout.root} to start over; nothing in it was changed"
    )


def _models(frozen: dict[str, Any]) -> list[Any]:
    checkpoints = frozen.get("checkpoints")
    if not isinstance(checkpoints, list):
        return []
    return [checkpoint.get("model") if isinstance(checkpoint, dict) else None for checkpoint in checkpoints]


def _imported(models: list[Any]) -> bool:
    return bool(models) and all(model == IMPORTED_MODEL for model in models)
