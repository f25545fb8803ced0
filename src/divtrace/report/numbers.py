"""How the report and ``summary.md`` write numbers: one formatter per kind of number, used by both.

Changes carry their sign (``+4.0%``, ``-62.0%``) and are negative when diversity is lost
(:data:`divtrace.analysis.SIGN_CONVENTION`); levels and shares are plain (``62.5%``, ``-25.0%``). Every minus sign
written is a true minus sign (U+2212, :data:`MINUS`; the examples below use a hyphen). A missing value (None, NaN,
or not a number) is an en dash.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

DASH = "\N{EN DASH}"
MINUS = "\N{MINUS SIGN}"


def missing(value: Any) -> bool:
    """Whether ``value`` is absent: None, NaN, pandas NA, or not a number at all."""
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def absent(value: Any) -> bool:
    """Whether a value of any type (a name, a number) is absent: None, NaN or pandas NA."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def signed(value: Any, digits: int = 1) -> str:
    """``+4.0`` / ``-62.0``: a number with its sign and ``digits`` decimals; an en dash when missing."""
    if missing(value):
        return DASH
    return f"{float(value):+.{digits}f}".replace("-", MINUS)


def plain(value: Any, digits: int = 1) -> str:
    """``62.5`` / ``-25.0``: a number without a plus sign, true minus sign; an en dash when missing."""
    if missing(value):
        return DASH
    return f"{float(value):.{digits}f}".replace("-", MINUS)


def signed_pct_ci(value: Any, low: Any, high: Any, digits: int = 1) -> str:
    """A change in percent units: ``-62.0% [-65.0, -59.0]`` (``+4.0%`` without a CI); an en dash when missing."""
    return _with_ci(signed, value, low, high, digits, "%")


def pct_ci(value: Any, low: Any, high: Any, digits: int = 1) -> str:
    """A level in percent units: ``62.5% [58.1, 66.0]`` (``62.5%`` without a CI); an en dash when missing."""
    return _with_ci(plain, value, low, high, digits, "%")


def _with_ci(number: Callable[[Any, int], str], value: Any, low: Any, high: Any, digits: int, unit: str = "") -> str:
    """``value`` and ``[low, high]`` written by ``number`` (``unit`` after the value); the CI left out when either
    end is missing."""
    if missing(value):
        return DASH
    text = f"{number(value, digits)}{unit}"
    if missing(low) or missing(high):
        return text
    return f"{text} [{number(low, digits)}, {number(high, digits)}]"


def share_ci(value: Any, low: Any, high: Any) -> str:
    """A share given as a fraction, in percent: ``75.0% [60.2, 88.1]``, ``-25.0%``; an en dash when missing."""

    def percent(x: Any) -> float | None:
        return None if missing(x) else 100 * float(x)

    return pct_ci(percent(value), percent(low), percent(high))


def plain_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    """A level in its own units with its CI: ``0.512 [0.498, 0.530]`` (``0.512`` without a CI); an en dash when
    missing."""
    return _with_ci(plain, value, low, high, digits)


def signed_ci(value: Any, low: Any, high: Any, digits: int = 3) -> str:
    """A raw signed difference with its CI: ``-0.200 [-0.230, -0.170]``; an en dash when missing."""
    return _with_ci(signed, value, low, high, digits)
