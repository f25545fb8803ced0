"""Final-answer verifiers for math word problems: ``gsm8k`` and ``math`` (MATH algebra, geometry...).

Both take the *final answer* out of an output in the study's order of preference (its reference code takes the
first match of each kind, so a base model that goes on to write a new question with its own ``#### N`` is graded on
its own answer, not the invented one):

1. the first ``#### X`` (GSM8K's answer marker);
2. the first complete ``\\boxed{...}`` / ``\\fbox{...}``, nested braces included (``\\boxed{\\frac{1}{2}}``);
3. the first "the answer is X" / "final answer: X" / "answer: X" (for GSM8K: the first one followed by a number);
4. the last number in the text (thousands separators allowed: ``1,234``).

Equivalence with the gold answer goes through HuggingFace's ``math-verify`` (``math_verify.parse`` and
``math_verify.verify``): ``\\frac12``, ``0.5`` and ``\\frac{1}{2}`` are the same answer, so are ``x^2+1`` and
``1+x^2``. (The reference code compared strings cut at the first ``}``, which equates ``\\boxed{\\frac{1}{3}}``
with a gold ``\\frac{1}{2}``; see ``docs/fidelity.md``.) ``math-verify`` interrupts slow parses and comparisons
with ``signal.alarm``, which only works in the main thread. The ``math`` verifier therefore checks answers in the
calling process when it runs in the main thread, and in a child process (killed by a watchdog if it hangs) when it
runs in any other thread. GSM8K answers are plain numbers, which cannot hang, so ``gsm8k`` always checks
in-process.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import IO, Any, ClassVar, Literal

from divtrace.verify.base import Verdict, Verifier, register_verifier

#: Only the first ``MAX_OUTPUT_CHARS`` characters of an output are searched (far above a 32768-token sample).
MAX_OUTPUT_CHARS = 1_000_000
#: An extracted answer longer than this is not parsed (it is reported as incorrect, "answer too long").
MAX_ANSWER_CHARS = 1_000
#: A GSM8K final number longer than this (digits and sign) is incorrect without being compared.
MAX_NUMBER_CHARS = 100

Method = Literal["hash", "boxed", "answer_phrase", "last_number"]

_HASH_RE = re.compile(r"####\s*([^\n]+)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_PHRASE_RE = re.compile(r"(?i)\b(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*:?|:)")
_NUMBER_RE = re.compile(r"(?<![\w.])(?:-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|-?\.\d+)")
#: What may stand between "the answer is" and its number: spaces, Markdown bold, a dollar sign, a math opener.
_PHRASE_NUMBER_RE = re.compile(r"(?:\s|\*|\$|\\\(|\\\[|\{)*(-?\$?(?:\d|\.\d)[\d,]*(?:\.\d+)?)")
#: How an answer written without a math span may start: a number, a sign, a LaTeX command, a bracket.
_ANSWER_START_RE = re.compile(r"[-+\d.\\(\[{]")
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_PLAIN_NUMBER_RE = re.compile(r"(-?)(\d*)(?:\.(\d+))?")


# --------------------------------------------------------------------------------------------------- extraction


def _boxes(text: str) -> Iterator[str]:
    """Contents of the complete, non-empty ``\\boxed{...}``/``\\fbox{...}`` of ``text``, in order of appearance."""
    closing = _matching_braces(text)
    for match in _BOXED_RE.finditer(text):
        i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            content = text[i + 1 : closing[i]].strip() if i in closing else ""
        elif i > match.end():  # "\\boxed 5": the argument runs to the next space, "$" or end of line
            end = i
            while end < len(text) and text[end] not in " \t\n$":
                end += 1
            content = text[i:end]
        else:
            content = ""
        if content:
            yield content


def first_boxed(text: str) -> str | None:
    """The content of the first complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, or None.

    Braces nest (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); escaped braces ``\\{``/``\\}`` do not count.
    ``\\boxed 5`` (no braces, as in some MATH solutions) gives ``5``. An empty box, or one left open (a truncated
    output), is skipped in favour of the next complete one. Linear in ``len(text)``.
    """
    return next(_boxes(text), None)


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, or None (as
    :func:`first_boxed`, from the other end)."""
    found = None
    for found in _boxes(text):  # noqa: B007  (the loop keeps the last one)
        pass
    return found


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` that is closed -> position of its ``}`` (escaped braces ignored); one pass."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    return closing


def first_hash_answer(text: str) -> str | None:
    """What follows the first ``####`` of ``text`` (whitespace, line breaks included, skipped) to the end of that
    line, stripped; None when no ``####`` is followed by anything."""
    match = _HASH_RE.search(text)
    return match.group(1).strip() if match is not None else None


def _clean_phrase(rest: str) -> str | None:
    """The answer in the text after "the answer is": the first math span of its line, else a number-like start
    (``-3``, ``\\frac12``, ``(1, 2)``) or a single word up to the end of the sentence; None for prose ("answer: we
    first compute..."), so that a later phrase can give the answer."""
    lines = rest.split("\n")
    line = lines[0].strip()
    if not line.strip("* "):
        line = next((candidate.strip() for candidate in lines[1:] if candidate.strip()), "")
    line = line.strip("* \t")
    span = _MATH_SPAN_RE.search(line)
    if span is not None:
        line = next(group for group in span.groups() if group is not None)
    else:
        end = _SENTENCE_END_RE.search(line)
        if end is not None:
            line = line[: end.start()]
        line = line.strip().rstrip(".,;:!").strip("* \t")
        if not _ANSWER_START_RE.match(line) and (len(line.split()) > 1 or len(line) > 20):
            return None
    line = line.strip().rstrip(".,;:!").strip("* \t")
    return line or None


def _phrase_answers(text: str) -> Iterator[str]:
    """The answers after each "the answer is" / "final answer:" / "answer:" of ``text`` that is followed by one
    (see :func:`_clean_phrase`), in order."""
    for match in _ANSWER_PHRASE_RE.finditer(text):
        cleaned = _clean_phrase(text[match.end() : match.end() + 2_000])
        if cleaned is not None:
            yield cleaned


def _phrase_numbers(text: str) -> Iterator[str]:
    """The numbers that directly follow "the answer is" / "answer:" in ``text`` (Markdown bold, ``$`` and a math
    opener may stand between), in order; a phrase followed by words is skipped."""
    for match in _ANSWER_PHRASE_RE.finditer(text):
        number = _PHRASE_NUMBER_RE.match(text, match.end())
        if number is not None:
            yield number.group(1)


def last_number(text: str) -> str | None:
    """The last number in ``text`` as written (``-3``, ``0.5``, ``1,234``), or None when there is none."""
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def first_number(text: str) -> str | None:
    """The first number in ``text`` as written (``-3``, ``0.5``, ``1,234``), or None when there is none."""
    match = _NUMBER_RE.search(text)
    return match.group(0) if match is not None else None


def normalize_number(number: str) -> str | None:
    """A number as written (``1,234``, ``-0.50``, ``$18``) in canonical form (``1234``, ``-0.5``, ``18``), or None.

    Exact for any length (plain string arithmetic, no rounding): leading zeros and trailing decimal zeros go,
    ``-0`` becomes ``0``. None when ``number`` is not a plain decimal number.
    """
    match = _PLAIN_NUMBER_RE.fullmatch(number.replace(",", "").replace("$", "").strip())
    if match is None or not (match.group(2) or match.group(3)):
        return None
    sign, whole, fraction = match.group(1), match.group(2).lstrip("0") or "0", (match.group(3) or "").rstrip("0")
    text = whole + ("." + fraction if fraction else "")
    return text if text == "0" or not sign else "-" + text


def extract_final_answer(text: str) -> tuple[str, Method] | None:
    """The final answer of ``text`` and how it was found, or None when the text has none.

    Order of preference: the first ``#### X`` (``"hash"``), the first complete ``\\boxed{X}``/``\\fbox{X}``
    (``"boxed"``), the first "the answer is X"/"final answer: X"/"answer: X" (``"answer_phrase"``: the first
    ``$...$`` span after it, else the rest of the sentence), the last number (``"last_number"``). Only the first
    ``MAX_OUTPUT_CHARS`` characters are searched. Never raises for any string.
    """
    text = text[:MAX_OUTPUT_CHARS]
    hashed = first_hash_answer(text)
    if hashed:
        return hashed, "hash"
    boxed = first_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    phrase = next(_phrase_answers(text), None)
    if phrase is not None:
        return phrase, "answer_phrase"
    number = last_number(text)
    return (number, "last_number") if number is not None else None


def extract_final_number(text: str) -> tuple[str, Method] | None:
    """The final answer of a GSM8K output and how it was found, or None when the output has no answer at all.

    As the study's reference: the first ``#### X`` decides, else the first complete ``\\boxed{X}``, else the first
    "the answer is N" / "answer: N" directly followed by a number, else the last number. The answer is the first
    number in ``X`` in canonical form (``#### $1,234.`` gives ``"1234"``); when the ``####`` or the box that
    decides holds no number (``#### forty``), the answer is its text as written (an answer, but not a number: it
    cannot be correct) and later candidates are not looked at. Only the first ``MAX_OUTPUT_CHARS`` characters are
    searched.
    """
    text = text[:MAX_OUTPUT_CHARS]
    decisive: list[tuple[str | None, Method]] = [(first_hash_answer(text), "hash"), (first_boxed(text), "boxed")]
    for candidate, method in decisive:
        if candidate:
            number = first_number(candidate.replace("{,}", ","))
            normalized = normalize_number(number) if number is not None else None
            return (normalized, method) if normalized is not None else (candidate, method)
    for number in _phrase_numbers(text):
        normalized = normalize_number(number)
        if normalized is not None:
            return normalized, "answer_phrase"
    number = last_number(text)
    normalized = normalize_number(number) if number is not None else None
    return (normalized, "last_number") if normalized is not None else None


# --------------------------------------------------------------------------------------------------- references


def gsm8k_gold(reference: dict[str, Any]) -> str:
    """The gold number of a GSM8K reference, canonical (``"1234"``).

    ``reference["answer"]`` is the full GSM8K solution ending in ``#### N`` (the number after its first ``####``
    is the gold) or a bare number (int, float or string). Raises ValueError naming the field when it is missing or
    holds no number.
    """
    if "answer" not in reference or reference["answer"] is None:
        raise ValueError(f"gsm8k reference needs an 'answer' field (got keys {sorted(reference)})")
    answer = reference["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float, Decimal)):
        raise ValueError(f"gsm8k reference 'answer' must be a string or a number, not {type(answer).__name__}")
    text = format(Decimal(repr(answer)), "f") if isinstance(answer, float) else str(answer)
    if "####" in text:
        text = text.split("####", 1)[1]
    number = first_number(text)
    gold = normalize_number(number) if number is not None else None
    if gold is None:
        raise ValueError(f"gsm8k reference 'answer' has no final number after '####': {str(answer)[-200:]!r}")
    return gold


def math_gold(reference: dict[str, Any]) -> str:
    """The gold answer of a MATH reference, as LaTeX.

    ``reference["answer"]`` when present and not empty, else the first complete ``\\boxed{...}`` of
    ``reference["solution"]`` (EleutherAI/hendrycks_math rows have only ``solution``; the study's reference code
    takes the first box too). Raises ValueError naming
    the field when neither gives an answer.
    """
    answer = reference.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    solution = reference.get("solution")
    if solution is None:
        raise ValueError(f"math reference needs an 'answer' or a 'solution' field (got keys {sorted(reference)})")
    if not isinstance(solution, str):
        raise ValueError(f"math reference 'solution' must be a string, not {type(solution).__name__}")
    boxed = first_boxed(solution)
    if boxed is None:
        raise ValueError(f"math reference 'solution' has no \\boxed{{...}} answer: {solution[-200:]!r}")
    return boxed


# --------------------------------------------------------------------------------------------------- equivalence


@dataclass(frozen=True)
class _Check:
    equal: bool
    status: Literal["ok", "unparsed", "timeout", "error"]
    normalized: str | None


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that timeouts are off; we turn them off only for inputs that cannot hang."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for math-verify's "Timeout is disabled" warning, True for everything else."""
        return "Timeout is disabled" not in record.getMessage()


_QUIET = _DropTimeoutDisabledWarning()


def _quiet_timeout_warning() -> None:
    for name in ("math_verify.parser", "math_verify.grader"):
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


def _can_use_signals() -> bool:
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


def _parse(text: str, timeout_s: int | None, kind: Literal["latex", "number"]) -> list[Any]:
    """math-verify's parse of one answer: LaTeX (wrapped in ``\\boxed{}`` so the whole answer is the target, with
    plain expressions as the fallback) or a plain number (no LaTeX parser involved)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    if kind == "number":
        return list(
            parse(
                text,
                extraction_config=[ExprExtractionConfig()],
                parsing_timeout=timeout_s,  # None disables the signal-based timeout
                raise_on_error=True,
            )
        )
    return list(
        parse(
            "\\boxed{" + text + "}",
            extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
            parsing_timeout=timeout_s,
            raise_on_error=True,
        )
    )


def _describe(parsed: Sequence[Any]) -> str | None:
    """A short canonical form of the first parsed expression (for answer-level statistics), or None."""
    for item in parsed:
        try:
            text = str(item)
        except Exception:  # huge integers refuse str() (sys.int_info.str_digits_check_threshold)
            return None
        return text if len(text) <= 200 else None
    return None


def _compare(gold: str, answer: str, timeout_s: int | None, kind: Literal["latex", "number"] = "latex") -> _Check:
    """Whether ``answer`` equals ``gold`` according to math-verify, in this process.

    ``timeout_s`` bounds each parse and each comparison (signal-based: main thread only; None: no bound). What
    math-verify cannot parse is compared as a string.
    """
    from math_verify import verify
    from math_verify.errors import TimeoutException

    timed_out = False
    parsed: list[list[Any]] = []
    for position, text in enumerate((gold, answer)):
        try:
            parsed.append(_parse(text, timeout_s, kind))
        except TimeoutException:
            if position == 1:
                return _Check(False, "timeout", None)
            timed_out = True
            parsed.append([])
        except Exception:
            parsed.append([])
    gold_parsed, answer_parsed = parsed[0] or [gold], parsed[1]
    normalized = _describe(answer_parsed)
    status: Literal["ok", "unparsed", "timeout", "error"] = "ok" if answer_parsed else "unparsed"
    for gold_item, answer_item in product(gold_parsed, answer_parsed or [answer]):
        try:
            if verify(gold_item, answer_item, timeout_seconds=timeout_s, raise_on_error=True):
                return _Check(True, "ok", normalized)
        except TimeoutException:
            timed_out = True
        except Exception:
            continue
    return _Check(False, "timeout" if timed_out else status, normalized)


_CHILD_MARK = "DIVTRACE-MATH "
_CHILD_CODE = "from divtrace.verify.math import _serve_isolated; _serve_isolated()"


def _serve_isolated() -> None:
    """Child-process side of :class:`_MathChild`: JSON lines in on stdin, marked JSON lines out on stdout.

    Announces ``"ready"`` once math-verify is imported. The first line in is ``{"timeout_s": N}``; each further
    line ``[gold, answer]`` gets one line ``DIVTRACE-MATH [equal, status, normalized]``, in order, until stdin
    closes.
    """
    import warnings

    import math_verify  # noqa: F401  (import before announcing readiness)

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    out = sys.stdout
    out.write(_CHILD_MARK + '"ready"\n')
    out.flush()
    header = sys.stdin.readline()
    if not header:
        return
    timeout_s = json.loads(header).get("timeout_s")
    if not hasattr(signal, "SIGALRM"):
        timeout_s = None  # no signals here: the parent's watchdog is the only bound
    for line in sys.stdin:
        gold, answer = json.loads(line)
        check = _compare(gold, answer, timeout_s)
        out.write(_CHILD_MARK + json.dumps([check.equal, check.status, check.normalized]) + "\n")
        out.flush()


def _drain(stream: IO[str], sink: queue.Queue[Any]) -> None:
    try:
        for line in stream:
            if line.startswith(_CHILD_MARK):
                sink.put(json.loads(line[len(_CHILD_MARK) :]))
    except (OSError, ValueError):
        pass
    sink.put(None)


def _feed(stream: IO[str], lines: list[str]) -> None:
    try:
        for line in lines:
            stream.write(line)
        stream.flush()
    except (OSError, ValueError):
        pass  # the child was killed


def _kill(proc: subprocess.Popen[str], stderr: IO[str]) -> None:
    stderr.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except (OSError, ValueError):
            pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    import divtrace

    package_root = str(Path(divtrace.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


class _MathChild:
    """A child process that runs :func:`_compare` (with signal timeouts: they work in its main thread).

    Kept across batches; killed when it hangs, when its verifier is collected, or at interpreter exit.
    """

    def __init__(self, timeout_s: int, startup_s: float) -> None:
        # Lives as long as the child (its startup errors are read back from it).
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            env=_child_env(),
        )
        self._finalizer = weakref.finalize(self, _kill, self.proc, self._stderr)
        self._sink: queue.Queue[Any] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=_drain, args=(self.proc.stdout, self._sink), daemon=True).start()
        try:
            ready = self._sink.get(timeout=startup_s)
        except queue.Empty:
            ready = None
        if ready != "ready":
            self._stderr.seek(0)
            errors = self._stderr.read()[-2000:]
            self.close()
            raise RuntimeError(f"the math-verify worker process did not start: {errors}")
        self._stderr.seek(0)
        self._stderr.truncate()
        _feed(self._stdin, [json.dumps({"timeout_s": timeout_s}) + "\n"])

    @property
    def _stdin(self) -> IO[str]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def alive(self) -> bool:
        """Whether the child process is still running."""
        return self.proc.poll() is None

    def run(self, pairs: Sequence[tuple[str, str]], watchdog_s: float) -> tuple[list[_Check], _Check | None]:
        """Results for ``pairs`` in order; stops at the first pair that takes over ``watchdog_s`` seconds or kills
        the child, and returns the verdict for that pair as the second item (None when all went through)."""
        lines = [json.dumps(list(pair)) + "\n" for pair in pairs]
        threading.Thread(target=_feed, args=(self._stdin, lines), daemon=True).start()
        results: list[_Check] = []
        while len(results) < len(pairs):
            try:
                item = self._sink.get(timeout=watchdog_s)
            except queue.Empty:
                self.close()
                return results, _Check(False, "timeout", None)
            if item is None:  # the child died on this pair (memory, crash)
                self.close()
                return results, _Check(False, "error", None)
            equal, status, normalized = item
            results.append(_Check(bool(equal), status, normalized))
        return results, None

    def close(self) -> None:
        """Kill the child process (idempotent)."""
        self._finalizer()


# --------------------------------------------------------------------------------------------------- verifiers


def _verdict(extracted: str, method: Method, check: _Check, timeout_s: int) -> Verdict:
    extra: dict[str, Any] = {"method": method}
    if check.normalized is not None:
        extra["normalized"] = check.normalized
    detail = {
        "ok": None if check.equal else "wrong answer",
        "unparsed": "answer not parsed by math-verify; compared as a string",
        "timeout": f"math-verify timed out (limit {timeout_s} s per step)",
        "error": "math-verify worker crashed on this answer",
    }[check.status]
    return Verdict(correct=check.equal, extracted=extracted, detail=detail, extra=extra)


@register_verifier
class GSM8KVerifier(Verifier):
    """GSM8K: the output's final number equals the gold number (``#### N`` of the reference solution).

    References: ``{"answer": "<the GSM8K solution ending in #### N>"}`` or ``{"answer": N}``. The final answer is
    taken as :func:`extract_final_number` says (the first ``####`` first). ``extracted`` is the final number in
    canonical form (``"1,234.00"`` gives ``"1234"``), or the deciding ``####``/box text when it holds no number
    (incorrect); ``extra["method"]`` says where it was found (``hash``, ``boxed``, ``answer_phrase``,
    ``last_number``). Equivalence: ``math_verify.verify``. Safe in any
    thread (plain numbers cannot make math-verify hang, so no timeout is needed outside the main thread).
    """

    name: ClassVar[str] = "gsm8k"

    def __init__(self, timeout_s: int = 5) -> None:
        """``timeout_s``: math-verify's per-step limit, used in the main thread."""
        self.timeout_s = timeout_s

    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per output; raises ValueError only for a broken reference (see the class docstring)."""
        if len(outputs) != len(references):
            raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
        golds = [gsm8k_gold(reference) for reference in references]
        timeout_s = self.timeout_s if _can_use_signals() else None
        if timeout_s is None:
            _quiet_timeout_warning()
        cache: dict[tuple[str, str], _Check] = {}
        verdicts: list[Verdict] = []
        for output, gold in zip(outputs, golds, strict=True):
            found = extract_final_number(output if isinstance(output, str) else "")
            if found is None:
                verdicts.append(Verdict(False, None, "no final number"))
                continue
            number, method = found
            if normalize_number(number) is None:  # "#### forty": the deciding answer, not a number
                verdicts.append(
                    Verdict(False, number[:MAX_NUMBER_CHARS], "no number in the final answer", {"method": method})
                )
                continue
            if len(number) > MAX_NUMBER_CHARS:
                verdicts.append(Verdict(False, number[:MAX_NUMBER_CHARS], "number too long", {"method": method}))
                continue
            if (gold, number) not in cache:
                cache[(gold, number)] = _compare(gold, number, timeout_s, "number")
            check = cache[(gold, number)]
            verdicts.append(_verdict(number, method, check, self.timeout_s))
        return verdicts


@register_verifier
class MathVerifier(Verifier):
    """MATH (Hendrycks): the output's final answer is mathematically equal to the gold answer (math-verify).

    References: ``{"solution": "... \\boxed{gold} ..."}`` (EleutherAI/hendrycks_math) and/or ``{"answer": gold}``
    (``answer`` wins when both are given). ``extracted`` is the final answer as written in the output (see
    :func:`extract_final_answer`); ``extra`` holds ``method`` and, when math-verify parsed the answer,
    ``normalized`` (its SymPy form, e.g. ``1/2`` for both ``\\frac12`` and ``0.5``: a key for answer-level
    statistics). Answers longer than ``MAX_ANSWER_CHARS`` are incorrect without parsing.

    Args:
        timeout_s: math-verify's limit per parse and per comparison, in seconds.
        isolation: ``"auto"`` checks in this process when called from the main thread (signal-based timeouts)
            and in a child process from any other thread; ``"process"`` always uses a child process, which also
            stops computations that signals cannot interrupt. The child process is started on first need (about
            2 s), kept for later batches, and restarted after the watchdog kills it; :meth:`close` stops it.
        watchdog_s: how long the parent waits for one answer from the child process before killing it
            (default: ``6 * timeout_s + 5``, two parses and four comparisons).
        startup_s: how long the child process may take to start.
    """

    name: ClassVar[str] = "math"

    def __init__(
        self,
        timeout_s: int = 5,
        isolation: Literal["auto", "process"] = "auto",
        watchdog_s: float | None = None,
        startup_s: float = 120.0,
    ) -> None:
        """See the class docstring."""
        if isolation not in ("auto", "process"):
            raise ValueError(f"isolation must be 'auto' or 'process', not {isolation!r}")
        if timeout_s < 1:
            raise ValueError(f"timeout_s must be at least 1 (math-verify uses whole seconds), not {timeout_s}")
        self.timeout_s = int(timeout_s)
        self.isolation = isolation
        self.watchdog_s = watchdog_s if watchdog_s is not None else 6 * self.timeout_s + 5
        self.startup_s = startup_s
        self._lock = threading.Lock()
        self._child: _MathChild | None = None

    def verify_batch(self, outputs: Sequence[str], references: Sequence[dict[str, Any]]) -> list[Verdict]:
        """One verdict per output; raises ValueError only for a broken reference (see the class docstring)."""
        if len(outputs) != len(references):
            raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
        golds = [math_gold(reference) for reference in references]
        found = [extract_final_answer(output if isinstance(output, str) else "") for output in outputs]
        pairs = sorted(
            {
                (gold, item[0])
                for gold, item in zip(golds, found, strict=True)
                if item is not None and len(item[0]) <= MAX_ANSWER_CHARS
            }
        )
        checks = dict(zip(pairs, self._check(pairs), strict=True))
        verdicts: list[Verdict] = []
        for gold, item in zip(golds, found, strict=True):
            if item is None:
                verdicts.append(Verdict(False, None, "no final answer"))
            elif len(item[0]) > MAX_ANSWER_CHARS:
                verdicts.append(
                    Verdict(False, item[0][:MAX_ANSWER_CHARS], "answer too long to parse", {"method": item[1]})
                )
            else:
                verdicts.append(_verdict(item[0], item[1], checks[(gold, item[0])], self.timeout_s))
        return verdicts

    def _check(self, pairs: list[tuple[str, str]]) -> list[_Check]:
        if not pairs:
            return []
        if self.isolation == "auto" and _can_use_signals():
            return [_compare(gold, answer, self.timeout_s) for gold, answer in pairs]
        with self._lock:
            results: list[_Check] = []
            while len(results) < len(pairs):
                if self._child is None or not self._child.alive():
                    self._child = _MathChild(self.timeout_s, self.startup_s)
                done, failed = self._child.run(pairs[len(results) :], self.watchdog_s)
                results += done
                if failed is not None:
                    results.append(failed)
                    self._child = None
            return results

    def close(self) -> None:
        """Stop the child process, if one was started (a later batch starts a new one)."""
        with self._lock:
            if self._child is not None:
                self._child.close()
                self._child = None
