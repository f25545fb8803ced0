"""Small task files that ship with divtrace, for the offline quickstart study.

``open_ended``: 8 open-ended prompts (creative writing, advice, description): how diverse is free text.
``arithmetic``: 8 one-step arithmetic word problems written for divtrace, in the GSM8K format and checked by the
``gsm8k`` verifier: a verifiable task small models sometimes get right.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent
QUICKSTART_TASK_FILES: tuple[Path, ...] = (BUNDLED_DIR / "open_ended.yaml", BUNDLED_DIR / "arithmetic.yaml")
