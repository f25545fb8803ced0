"""From judge answers to tables: ``judgments`` (one row per judge call) and ``quality`` (one row per checkpoint,
task and protocol), the study's aggregation.

Per prompt, a protocol's value is the mean over its judged outputs (one with ``outputs: first``, the study's
setting): Kirk et al.'s win (1), tie (.5) or loss (0); Arena-Hard's two orders averaged, only for an output whose
two answers were both readable (the study's "both rounds" rule); WB-Score's 1-10 score. A cell's value is the mean
over its prompts, which for the first output per prompt is exactly the study's win rate ``(wins + ties / 2) / n``,
Arena-Hard's ``(mean round 1 + mean round 2) / 2`` and WB-Score's raw mean; its CI is the percentile bootstrap over
prompts (:func:`divtrace.stats.cell_mean_cis`). An answer that cannot be read is kept in ``judgments`` and counted
in ``n_unparseable``; it adds nothing to the value (the study dropped it too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from divtrace.judge.protocols import get_protocol
from divtrace.judge.requests import JudgeRequest, JudgeResponse
from divtrace.stats.bootstrap import BootstrapSettings, cell_mean_cis

#: Columns of the judgments table (``judgments.parquet``): one row per judge call, plus one per output the study
#: would not send (``order`` ``skipped``, ``verdict`` saying why).
JUDGMENT_COLUMNS = [
    "checkpoint",
    "task",
    "prompt_id",
    "sample_index",
    "protocol",
    "order",
    "baseline",
    "judge_model",
    "key",
    "source",
    "raw_response",
    "error",
    "verdict",
    "value",
]
#: Columns of the quality table (``quality.csv``).
QUALITY_COLUMNS = [
    "checkpoint",
    "task",
    "protocol",
    "n_prompts",
    "value",
    "ci_low",
    "ci_high",
    "n_unparseable",
    "n_judgments",
    "n_skipped",
    "baseline",
    "judge_model",
    "value_kind",
]
SKIPPED = "skipped"


def judgment_rows(requests: Sequence[JudgeRequest], responses: Mapping[str, JudgeResponse]) -> pd.DataFrame:
    """The judgments table of ``requests`` answered by ``responses`` (by key; every request must have one): each
    answer read by its protocol (:meth:`JudgeProtocol.read`), the raw answer kept."""
    rows = []
    for request in requests:
        response = responses[request.key]
        judgment = get_protocol(request.protocol).read(request.order, response.text) if response.text else None
        rows.append(
            {
                "checkpoint": request.checkpoint,
                "task": request.task,
                "prompt_id": request.prompt_id,
                "sample_index": request.sample_index,
                "protocol": request.protocol,
                "order": request.order,
                "baseline": request.baseline,
                "judge_model": request.settings.model,
                "key": request.key,
                "source": response.source,
                "raw_response": response.text,
                "error": response.error,
                "verdict": judgment.verdict if judgment else None,
                "value": judgment.value if judgment and judgment.value is not None else np.nan,
            }
        )
    return as_judgments(pd.DataFrame(rows, columns=JUDGMENT_COLUMNS))


def skipped_rows(skipped: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Rows for outputs not sent to the judge: each mapping gives the output's labels (checkpoint, task, prompt_id,
    sample_index, protocol, baseline, judge_model) and ``verdict`` (why it was not sent)."""
    rows = [{**{column: None for column in JUDGMENT_COLUMNS}, **fields} for fields in skipped]
    frame = pd.DataFrame(rows, columns=JUDGMENT_COLUMNS)
    frame["order"] = SKIPPED
    return as_judgments(frame)


def as_judgments(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the judgments table's columns and types (labels as text, ``sample_index`` an integer,
    ``value`` a float)."""
    frame = frame.reindex(columns=JUDGMENT_COLUMNS)
    for column in ("checkpoint", "task", "prompt_id", "protocol", "order", "baseline", "judge_model"):
        frame[column] = frame[column].fillna("").astype(str)
    frame["sample_index"] = pd.to_numeric(frame["sample_index"]).fillna(-1).astype("int64")
    frame["value"] = pd.to_numeric(frame["value"]).astype("float64")
    for column in ("key", "source", "raw_response", "error", "verdict"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def prompt_values(cell: pd.DataFrame, protocol: str) -> pd.Series:
    """The value of each prompt of one (checkpoint, task) cell's judgments (see the module documentation), indexed
    by prompt id; prompts without a readable judgment are left out."""
    judged = cell[(cell["order"] != SKIPPED) & cell["value"].notna()]
    if get_protocol(protocol).needs_baseline:
        orders = judged.groupby(["prompt_id", "sample_index"])["value"].agg(["mean", "count"])
        both = orders[orders["count"] == 2]["mean"]
        return both.groupby(level="prompt_id", sort=False).mean()
    return judged.groupby("prompt_id", sort=False)["value"].mean()


def quality_table(judgments: pd.DataFrame, bootstrap: BootstrapSettings | None = None) -> pd.DataFrame:
    """The quality table (:data:`QUALITY_COLUMNS`) of a judgments table: per (checkpoint, task, protocol), the
    value over prompts with its bootstrap CI, the prompts counted, the unreadable answers (``n_unparseable``,
    requests refused by the server included), the calls made and the outputs not sent (``n_skipped``)."""
    settings = bootstrap or BootstrapSettings()
    rows = []
    if judgments.empty:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    for (checkpoint, task, protocol), cell in judgments.groupby(["checkpoint", "task", "protocol"], sort=False):
        values = prompt_values(cell, str(protocol))
        estimate = cell_mean_cis({0: values.to_numpy(dtype=np.float64)}, settings)[0]
        sent = cell[cell["order"] != SKIPPED]
        baselines = sorted(set(sent["baseline"]) - {""})
        rows.append(
            {
                "checkpoint": checkpoint,
                "task": task,
                "protocol": protocol,
                "n_prompts": len(values),
                "value": estimate.mean,
                "ci_low": estimate.low,
                "ci_high": estimate.high,
                "n_unparseable": int(sent["value"].isna().sum()),
                "n_judgments": len(sent),
                "n_skipped": int((cell["order"] == SKIPPED).sum()),
                "baseline": ",".join(baselines),
                "judge_model": ",".join(sorted(set(sent["judge_model"]) - {""})),
                "value_kind": get_protocol(str(protocol)).value_kind,
            }
        )
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)
