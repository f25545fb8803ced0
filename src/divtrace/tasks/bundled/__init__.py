"""Small task files that ship with divtrace.

For the offline quickstart study:

``open_ended``: 8 open-ended prompts (creative writing, advice, description): how diverse is free text.
``arithmetic``: 8 one-step arithmetic word problems written for divtrace, in the GSM8K format and checked by the
``gsm8k`` verifier: a verifiable task small models sometimes get right.

For the lineage lab (:mod:`divtrace.lab`):

``lab_prompts``: 64 short, diverse instructions written for divtrace (stories, lists, explanations, advice,
descriptions, poems), the prompts a teacher answers when a lab stage distils it into SFT data: the quickstart's 8
are too few to train on.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent
QUICKSTART_TASK_FILES: tuple[Path, ...] = (BUNDLED_DIR / "open_ended.yaml", BUNDLED_DIR / "arithmetic.yaml")
LAB_TASK_FILES: tuple[Path, ...] = (BUNDLED_DIR / "lab_prompts.yaml",)
#: Every bundled task file, registered by name when :mod:`divtrace.tasks.registry` is imported.
BUNDLED_TASK_FILES: tuple[Path, ...] = QUICKSTART_TASK_FILES + LAB_TASK_FILES
