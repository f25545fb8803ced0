"""The judge prompts: published texts kept as data files (``judge/templates/*.toml``) that name their source.

Each file holds one protocol's prompt exactly as the study sent it to its judge (reference code
``scripts/compute_*_quality.py``): ``system`` (absent for WB-Score, which is one user message), ``user`` with
``{placeholder}`` fields, ``source`` (the paper the text comes from), ``as_used_by`` (where the study used it, with
its judge settings), ``temperature`` and ``max_tokens``. Literal braces in the text (Kirk et al.'s
``{"model": "model_1", ...}``) are the text the judge sees: only the named placeholders are replaced, in one pass,
so a judged text that happens to contain ``{summary_b}`` is never expanded again.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from divtrace.errors import DivtraceError
from divtrace.fingerprint import fingerprint


@dataclass(frozen=True)
class JudgeTemplate:
    """One protocol's judge prompt (see the module documentation)."""

    name: str
    source: str
    as_used_by: str
    placeholders: tuple[str, ...]
    system: str | None
    user: str
    temperature: float
    max_tokens: int

    @property
    def digest(self) -> str:
        """The fingerprint of the texts and placeholders (part of every request key, see
        :func:`divtrace.judge.requests.request_key`)."""
        return fingerprint(
            {"system": self.system, "user": self.user, "placeholders": list(self.placeholders)}, ensure_ascii=False
        )

    def messages(self, fields: Mapping[str, str]) -> tuple[dict[str, str], ...]:
        """The chat messages with ``fields`` filled in: the system message (when the template has one), then the
        user message. Raises DivtraceError when ``fields`` lacks a placeholder or has one the template lacks."""
        missing = sorted(set(self.placeholders) - set(fields))
        extra = sorted(set(fields) - set(self.placeholders))
        if missing or extra:
            raise DivtraceError(
                f"judge template {self.name}: fields {missing or extra} are "
                + ("missing" if missing else "not placeholders of it")
                + f" (placeholders: {', '.join(self.placeholders)})"
            )
        user = fill(self.user, fields)
        if self.system is None:
            return ({"role": "user", "content": user},)
        return ({"role": "system", "content": self.system}, {"role": "user", "content": user})


def fill(text: str, fields: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` of ``fields`` replaced by its value, in one pass (hand-written: ``str.format``
    would need the template's literal braces doubled, and a sequential ``replace`` would expand placeholders that a
    filled-in value contains)."""
    if not fields:
        return text
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in fields))
    return pattern.sub(lambda match: fields[match.group(0)[1:-1]], text)


@cache
def load_template(name: str) -> JudgeTemplate:
    """The template called ``name`` (``kirk_summary``, ``arena_hard_creative``, ``wb_score``) from the package's
    ``judge/templates/NAME.toml``. Raises DivtraceError for an unknown name, listing the known ones."""
    folder = resources.files("divtrace.judge") / "templates"
    path = folder / f"{name}.toml"
    if not path.is_file():
        known = sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))
        raise DivtraceError(f"no judge template {name!r}; known: {', '.join(known)}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return JudgeTemplate(
        name=str(data["name"]),
        source=str(data["source"]),
        as_used_by=str(data["as_used_by"]),
        placeholders=tuple(str(p) for p in data["placeholders"]),
        system=str(data["system"]) if "system" in data else None,
        user=str(data["user"]),
        temperature=float(data["temperature"]),
        max_tokens=int(data["max_tokens"]),
    )
