"""The judge prompts are the study's published texts, kept as data files naming their source."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from divtrace.errors import DivtraceError
from divtrace.judge.protocols import PROTOCOLS
from divtrace.judge.templates import fill, load_template

#: The digest of each template's texts, as checked against the study's reference code (scripts/compute_*_quality.py:
#: prompts rendered from these files were compared character for character with the reference's own formatting). It
#: is part of every judge request key, so a change to a text re-asks every judgment: it must be deliberate.
TEMPLATE_DIGESTS = {
    "kirk_summary": "90b4822ffc82b3d6b5c1edd37b63981955a2baad93483390d10e31f34df3cb0d",
    "arena_hard_creative": "f8eba0dca643881749a673765d24d8bfa681cdb7717fa7071bb00c2ec0f2773c",
    "wb_score": "0d8c5f6a6f9926703ab4a0a357b5b04fe39297c102b6d2909fb73c748320cbf6",
}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_has_a_template_naming_its_source(name: str) -> None:
    template = load_template(name)
    assert template.name == name
    assert "20" in template.source and "where-diversity-collapses" in template.as_used_by
    assert template.temperature == 0.0
    for placeholder in template.placeholders:
        assert "{" + placeholder + "}" in template.user


@pytest.mark.parametrize("name", sorted(TEMPLATE_DIGESTS))
def test_template_texts_are_unchanged(name: str) -> None:
    assert load_template(name).digest == TEMPLATE_DIGESTS[name]
    data = tomllib.loads((resources.files("divtrace.judge") / "templates" / f"{name}.toml").read_text("utf-8"))
    assert data["user"] == load_template(name).user


def test_study_settings_per_protocol() -> None:
    assert load_template("kirk_summary").max_tokens == 256
    assert load_template("arena_hard_creative").max_tokens == 1024
    assert load_template("wb_score").max_tokens == 1024
    assert load_template("wb_score").system is None  # WB-Score: one user message
    assert load_template("kirk_summary").system == (
        "You are a helpful assistant, that ranks models by the quality of their answers."
    )


def test_kirk_prompt_keeps_its_literal_braces_and_fills_only_placeholders() -> None:
    messages = load_template("kirk_summary").messages(
        {"doc_type": "forum post", "source": "I wrote {summary_b} here", "summary_a": "A.", "summary_b": "B."}
    )
    user = messages[1]["content"]
    assert 'Summary A:\n{"model": "model_1", "summary": """A."""}' in user
    assert 'Post: """I wrote {summary_b} here"""' in user  # a filled value is never expanded again
    assert "[{'model': <model-name>, 'rank': <model-rank>}," in user
    assert "in the given forum post, without" in user


def test_fill_is_one_pass() -> None:
    assert fill("{a}-{b}", {"a": "{b}", "b": "x"}) == "{b}-x"


def test_wrong_fields_and_unknown_templates_are_named() -> None:
    with pytest.raises(DivtraceError, match="missing"):
        load_template("wb_score").messages({"user_query": "q"})
    with pytest.raises(DivtraceError, match="known: arena_hard_creative, kirk_summary, wb_score"):
        load_template("mt_bench")
