"""The study's code-diversity metrics: AST subtrees (``ast``, ``ast-distinct``) by hand, and ``code-sbert`` /
``code-vendi`` on a tiny random RoBERTa-style encoder built offline (a plain transformers directory, like UniXcoder).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import divtrace
from divtrace.score.metrics import ScoringContext, create_metric, metric_class, metric_names
from divtrace.score.metrics.code_ast import (
    MAX_TREE_HEIGHT,
    node_heights,
    parse_program,
    program_subtrees,
    subtree_dumps,
)
from divtrace.score.metrics.embeddings import EmbeddingStore
from divtrace.score.settings import PAPER_CODE_EMBEDDER, CodeEmbedderSettings, EmbedderSettings
from tests.code_encoder import build_tiny_code_encoder

# Two programs whose height-4 subtrees are written out by hand below. Heights count every child node
# ast.iter_child_nodes yields, expression contexts and operators included: Name(ctx=Load()) has height 2,
# BinOp(Name, Add, Name) 3, so `x = a + b` (Assign) and `return x * y` (Return) have height 4 and are taken;
# `z = x` (Assign of two Names) has height 3 and is not; the FunctionDef (5) and Module (6) are descended into;
# `arguments` (2) is not.
P1 = "def f(a, b):\n    x = a + b\n    y = a + b\n    z = x\n    return x * y\n"
P2 = "def f(a, b):\n    x = a + b\n    x += a + b\n    x += a + b\n    return x * y\n"
UNPARSEABLE = "def f(a, b)\n    return a + b\n"  # no colon

ASSIGN_X = "Assign(targets=[Name(id='x', ctx=Store())], value=BinOp(left=Name(id='a', ctx=Load()), op=Add(), right=Name(id='b', ctx=Load())))"  # noqa: E501
ASSIGN_Y = "Assign(targets=[Name(id='y', ctx=Store())], value=BinOp(left=Name(id='a', ctx=Load()), op=Add(), right=Name(id='b', ctx=Load())))"  # noqa: E501
AUG_X = "AugAssign(target=Name(id='x', ctx=Store()), op=Add(), value=BinOp(left=Name(id='a', ctx=Load()), op=Add(), right=Name(id='b', ctx=Load())))"  # noqa: E501
RETURN_XY = "Return(value=BinOp(left=Name(id='x', ctx=Load()), op=Mult(), right=Name(id='y', ctx=Load())))"

P1_SUBTREES = Counter({ASSIGN_X: 1, ASSIGN_Y: 1, RETURN_XY: 1})
P2_SUBTREES = Counter({ASSIGN_X: 1, AUG_X: 2, RETURN_XY: 1})
# Jaccard: sum of min = ASSIGN_X 1 + RETURN_XY 1 = 2; sum of max = 1 + 1 + 2 + 1 = 5 -> 1 - 2/5.
P1_P2_DISTANCE = 0.6
# Pooled: 3 + 4 = 7 subtrees, 4 distinct.
P1_P2_DISTINCT = 4 / 7


def markdown(code: str, language: str = "python") -> str:
    return f"Here is my solution:\n\n```{language}\n{code}```\n\nIt adds the numbers.\n"


def score(name: str, groups: list[list[str]], context: ScoringContext | None = None) -> np.ndarray:
    return create_metric(name).score_groups(groups, context or ScoringContext())


# --------------------------------------------------------------------------------------------------- subtrees


def test_hand_written_subtree_multisets() -> None:
    assert program_subtrees(P1) == P1_SUBTREES
    assert program_subtrees(P2) == P2_SUBTREES
    assert program_subtrees(UNPARSEABLE) is None


def test_heights_count_contexts_and_operators() -> None:
    tree = ast.parse("return x")
    heights = node_heights(tree)
    ret = tree.body[0]
    assert heights[id(ret.value.ctx)] == 1  # Load()
    assert heights[id(ret.value)] == 2  # Name(ctx=Load())
    assert heights[id(ret)] == 3
    assert heights[id(tree)] == 4
    # the module itself is the only height-4 node, so it is the one subtree
    assert subtree_dumps(tree) == [ast.dump(tree)]


def test_a_height_four_node_is_not_descended_into() -> None:
    # The inner Return (height 4) is taken; the If holding it (height 5) is not, and nothing inside the Return is.
    tree = ast.parse("if c:\n    return a + b\n")
    assert subtree_dumps(tree) == [
        "Return(value=BinOp(left=Name(id='a', ctx=Load()), op=Add(), right=Name(id='b', ctx=Load())))"
    ]
    # `pass` alone (Module 2, Pass 1) has no node of height 4: it parses but has no subtree.
    assert program_subtrees("pass\n") == Counter()


def test_markdown_blocks_are_extracted_first() -> None:
    assert program_subtrees(markdown(P1)) == P1_SUBTREES
    assert program_subtrees(markdown(P2, language="py")) == P2_SUBTREES
    # the longest Python block wins; a bash block is not Python
    text = f"```bash\npip install x\n```\n```python\nx = 1\n```\n```python\n{P1}```"
    assert program_subtrees(text) == P1_SUBTREES


def test_body_continuations_parse_dedented_and_single_lines_as_the_reference() -> None:
    one_line = "    return x + 1\n"  # the reference strips it: `return x + 1` parses as a module
    assert program_subtrees(one_line, dedent_bodies=False) == Counter(
        ["Return(value=BinOp(left=Name(id='x', ctx=Load()), op=Add(), right=Constant(value=1)))"]
    )
    body = "    y = x * 2\n    return y + 1\n"  # stripped: the second line keeps its indentation
    assert parse_program(body, dedent_bodies=False) is None  # the reference leaves it out
    assert program_subtrees(body) == Counter(
        [
            "Assign(targets=[Name(id='y', ctx=Store())], value=BinOp(left=Name(id='x', ctx=Load()), op=Mult(), right=Constant(value=2)))",  # noqa: E501
            "Return(value=BinOp(left=Name(id='y', ctx=Load()), op=Add(), right=Constant(value=1)))",
        ]
    )


def test_programs_taller_than_the_reference_limit_give_no_subtrees() -> None:
    # Module > Expr > n UnaryOps > Name > Load: height n + 4.
    highest = ast.parse("-" * (MAX_TREE_HEIGHT - 4) + "x")
    assert node_heights(highest)[id(highest)] == MAX_TREE_HEIGHT
    assert len(subtree_dumps(highest)) == 1
    too_high = ast.parse("-" * (MAX_TREE_HEIGHT - 3) + "x")
    assert subtree_dumps(too_high) == []


# --------------------------------------------------------------------------------------------------- AST metrics


def test_ast_scores_of_a_group_with_an_unparseable_program() -> None:
    group = [P1, UNPARSEABLE, markdown(P2)]
    assert score("ast", [group])[0] == pytest.approx(P1_P2_DISTANCE, abs=1e-12)
    assert score("ast-distinct", [group])[0] == pytest.approx(P1_P2_DISTINCT, abs=1e-12)
    for name in ("ast", "ast-distinct"):
        diagnostics = create_metric(name).group_diagnostics([group], ScoringContext())
        assert set(diagnostics) == {"parse_rate"}
        np.testing.assert_allclose(diagnostics["parse_rate"], [2 / 3])


def test_fewer_than_two_parseable_programs() -> None:
    groups = [[P1, UNPARSEABLE], [UNPARSEABLE, UNPARSEABLE], [P1, "pass"], [P1, P1]]
    ast_values = score("ast", groups)
    assert np.isnan(ast_values[:3]).all()
    assert ast_values[3] == 0.0  # identical programs
    distinct = score("ast-distinct", groups)
    # one program with subtrees still has a pooled ratio (the reference computes it too); none has none
    np.testing.assert_allclose(distinct, [1.0, np.nan, 1.0, 0.5])
    metric = create_metric("ast")
    metric.score_groups(groups, ScoringContext())
    np.testing.assert_allclose(metric.group_diagnostics(groups, ScoringContext())["parse_rate"], [0.5, 0.0, 1.0, 1.0])


def test_diagnostics_without_a_scoring_call_and_several_groups() -> None:
    metric = create_metric("ast-distinct")
    groups = [[P1, P2, UNPARSEABLE, UNPARSEABLE], [P2, P2]]
    np.testing.assert_allclose(metric.group_diagnostics(groups, ScoringContext())["parse_rate"], [0.5, 1.0])
    np.testing.assert_allclose(metric.score_groups(groups, ScoringContext()), [P1_P2_DISTINCT, 3 / 8])


def test_metric_flags_and_registry() -> None:
    names = metric_names()
    for name in ("ast", "ast-distinct", "code-sbert", "code-vendi"):
        assert name in names
        cls = metric_class(name)
        assert cls.code_only and cls.suitable_for_code and not cls.uses_embeddings
    assert metric_class("code-sbert").uses_code_embeddings and metric_class("code-vendi").uses_code_embeddings
    assert not metric_class("ast").uses_code_embeddings
    assert metric_class("code-vendi").k_dependent and not metric_class("code-sbert").k_dependent
    assert not metric_class("sbert").code_only and not metric_class("sbert").uses_code_embeddings
    assert metric_class("sbert")().group_diagnostics([["a", "b"]], ScoringContext()) == {}
    assert create_metric("ast").settings()["subtree_height"] == 4


def test_api_scores_code_samples_with_the_ast_metrics() -> None:
    records = [
        divtrace.SampleRecord(prompt_id="p0", prompt="q", outputs=[P1, UNPARSEABLE, markdown(P2)], checkpoint="c"),
        divtrace.SampleRecord(prompt_id="p1", prompt="q", outputs=[P1, P1, P1], checkpoint="c"),
    ]  # the same K for both prompts (a mixed K would be cut to the smallest: samples/common_k.py)
    result = divtrace.score(records, metrics=["ast", "ast-distinct"], use_cache=False)
    per_prompt = result.per_prompt.set_index(["metric", "prompt_id"])["value"]
    assert per_prompt[("ast", "p0")] == pytest.approx(P1_P2_DISTANCE)
    assert per_prompt[("ast", "p1")] == 0.0
    assert per_prompt[("ast-distinct", "p1")] == pytest.approx(score("ast-distinct", [[P1, P1, P1]])[0])


def test_cli_scores_code_samples_with_the_ast_metrics(tmp_path: Path) -> None:
    samples = tmp_path / "code.jsonl"
    samples.write_text(
        json.dumps({"prompt_id": "p0", "prompt": "q", "outputs": [P1, UNPARSEABLE, markdown(P2)]})
        + "\n"
        + json.dumps({"prompt_id": "p1", "prompt": "q", "outputs": [P1, UNPARSEABLE, P2]})
        + "\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "divtrace.cli",
            "score",
            str(samples),
            "--metrics",
            "ast,ast-distinct",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DIVTRACE_CACHE_DIR": str(tmp_path / "cache")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = pd.DataFrame(json.loads(proc.stdout)).set_index("metric")
    assert summary.loc["ast", "mean"] == pytest.approx(P1_P2_DISTANCE)
    assert summary.loc["ast-distinct", "mean"] == pytest.approx(P1_P2_DISTINCT)


# --------------------------------------------------------------------------------------------------- code embeddings

CODE_GROUPS = [
    [P1, markdown(P2), "def g(n):\n    for i in range(n):\n        print(i)\n", "```python\n\n```"],
    ["import math\nprint(math.sqrt(2))\n", "def add(a, b):\n    return a + b\n"],
]


@pytest.fixture(scope="module")
def tiny_code_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_code_encoder(tmp_path_factory.mktemp("code-encoder") / "tiny-unixcoder")


def direct_embeddings(model_dir: Path, programs: list[str], pooling: str = "mean") -> np.ndarray:
    """Pooled, L2-normalised token vectors of a plain transformers forward pass (no sentence-transformers)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(programs, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state.numpy().astype(np.float64)
    if pooling == "cls":
        pooled = tokens[:, 0]
    else:
        mask = batch["attention_mask"].numpy()[:, :, None].astype(np.float64)
        pooled = (tokens * mask).sum(axis=1) / mask.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def reference_sbert(e: np.ndarray) -> float:
    sim = e @ e.T
    return float(1.0 - sim[np.triu_indices(len(e), k=1)].mean())


def reference_vendi(e: np.ndarray) -> float:
    eigenvalues = np.clip(np.linalg.eigvalsh(e @ e.T), 0, None)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 1e-12]
    return float(np.exp(-(p * np.log(p)).sum()))


def code_context(model_dir: Path, **settings: object) -> ScoringContext:
    store = EmbeddingStore(CodeEmbedderSettings(model=str(model_dir), max_seq_length=64, **settings), cache=False)
    return ScoringContext(code_embeddings=store)


def test_code_embedder_defaults_are_the_studys() -> None:
    settings = CodeEmbedderSettings()
    assert (settings.model, settings.pooling, settings.max_seq_length) == (PAPER_CODE_EMBEDDER, "mean", 512)
    assert EmbedderSettings().pooling is None
    assert "pooling" not in EmbedderSettings().identity()  # older fingerprints (and caches) stay valid
    assert EmbedderSettings(pooling="mean").fingerprint() != EmbedderSettings().fingerprint()


def test_a_plain_encoder_directory_is_mean_pooled(tiny_code_encoder: Path) -> None:
    programs = [P1.strip(), P2.strip(), "x = 1"]
    expected = direct_embeddings(tiny_code_encoder, programs)
    for settings in (CodeEmbedderSettings, EmbedderSettings):  # explicit "mean", and sentence-transformers' default
        store = EmbeddingStore(settings(model=str(tiny_code_encoder), max_seq_length=64), cache=False)
        np.testing.assert_allclose(store.embed(programs), expected, atol=1e-5)
    cls_settings = EmbedderSettings(model=str(tiny_code_encoder), max_seq_length=64, pooling="cls")
    cls_store = EmbeddingStore(cls_settings, cache=False)
    np.testing.assert_allclose(
        cls_store.embed(programs), direct_embeddings(tiny_code_encoder, programs, "cls"), atol=1e-5
    )
    assert not np.allclose(cls_store.embed(programs), expected, atol=1e-3)


def test_code_sbert_and_vendi_against_numpy_on_the_raw_embeddings(tiny_code_encoder: Path) -> None:
    context = code_context(tiny_code_encoder)
    sbert = score("code-sbert", CODE_GROUPS, context)
    vendi = score("code-vendi", CODE_GROUPS, context)
    # programs: extracted, stripped; the blank block is left out (3 programs in the first group)
    first = [P1.strip(), P2.strip(), "def g(n):\n    for i in range(n):\n        print(i)"]
    second = ["import math\nprint(math.sqrt(2))", "def add(a, b):\n    return a + b"]
    for index, programs in enumerate((first, second)):
        e = direct_embeddings(tiny_code_encoder, programs)
        assert sbert[index] == pytest.approx(reference_sbert(e), abs=1e-5)
        assert vendi[index] == pytest.approx(reference_vendi(e), abs=1e-4)
    assert 1.0 < vendi[0] <= 3.0 and sbert[0] > 0.0


def test_identical_programs_give_sbert_zero_and_vendi_one(tiny_code_encoder: Path) -> None:
    context = code_context(tiny_code_encoder)
    groups = [[P1, markdown(P1), P1 + "\n\n"]]  # one program, three times (wrapped, trailing whitespace)
    assert score("code-sbert", groups, context)[0] == pytest.approx(0.0, abs=1e-6)
    assert score("code-vendi", groups, context)[0] == pytest.approx(1.0, abs=1e-6)
    assert context.code_embeddings is not None and context.code_embeddings.stats.encoded == 1


def test_fewer_than_two_programs_is_nan_and_no_embedder_is_an_error(tiny_code_encoder: Path) -> None:
    context = code_context(tiny_code_encoder)
    groups = [[P1, "```python\n```"], [P1, P2]]
    assert np.isnan(score("code-sbert", groups, context)[0])
    vendi = score("code-vendi", groups, context)
    assert np.isnan(vendi[0]) and np.isfinite(vendi[1])
    with pytest.raises(RuntimeError, match="code embedder"):
        score("code-sbert", [[P1, P2]], ScoringContext())
