"""Generation building blocks that need no model: parameters, seeds, keys, thinking, prompts files, the sampler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from divtrace.errors import SampleFormatError
from divtrace.generate.backends.row_decoding import RowDraw
from divtrace.generate.params import SamplingParams, sample_seed
from divtrace.generate.prompts import read_prompts
from divtrace.generate.store import safe_name, sample_key, shard_path
from divtrace.generate.thinking import (
    EMPTY_THINKING_BLOCK,
    ThinkingMode,
    apply_thinking,
    prompt_opens_thinking,
    split_thinking,
)


def test_split_thinking_of_generated_outputs() -> None:
    """The generator's cases (the full rule is tested in tests/generate/test_thinking.py)."""
    assert split_thinking("<think>\nhmm, 2+2\n</think>\n\nIt is 4.") == ("It is 4.", "hmm, 2+2", False)
    assert split_thinking("hmm, 2+2</think>It is 4.", opened_in_prompt=True) == ("It is 4.", "hmm, 2+2", False)
    # the budget ran out while thinking: the text is kept (not emptied) and flagged
    assert split_thinking("<think>still thinking when the budget ran out") == (
        "<think>still thinking when the budget ran out",
        None,
        True,
    )
    assert split_thinking("still thinking", opened_in_prompt=True) == ("still thinking", None, True)
    assert split_thinking("  plain answer\n") == ("  plain answer\n", None, False)  # no tag: left as generated
    assert split_thinking(EMPTY_THINKING_BLOCK + "Answer") == ("Answer", "", False)


def test_apply_thinking_prefills_an_empty_block_once() -> None:
    prompt = "<|user|>hi<|assistant|>\n"
    assert apply_thinking(prompt, ThinkingMode.native) == prompt
    suppressed = apply_thinking(prompt, ThinkingMode.suppressed)
    assert suppressed == prompt + "<think>\n</think>\n"
    assert not prompt_opens_thinking(suppressed)
    assert apply_thinking("x<think>\n", ThinkingMode.suppressed) == "x<think>\n</think>\n"
    assert apply_thinking(suppressed, ThinkingMode.suppressed) == suppressed
    assert prompt_opens_thinking("x<think>\n") and not prompt_opens_thinking("x")


def test_sampling_params_refuse_greedy_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        SamplingParams(temperature=0.0)
    with pytest.raises(ValidationError):
        SamplingParams(top_p=1.5)
    with pytest.raises(ValidationError):
        SamplingParams(stop=("",))
    with pytest.raises(ValidationError):
        SamplingParams(nucleus=0.9)  # type: ignore[call-arg]  (unknown fields are errors, not ignored)
    study = SamplingParams()
    assert (study.k, study.temperature, study.top_p, study.seed) == (16, 0.6, 0.95, 1234)


def test_sample_seeds_are_stable_and_distinct() -> None:
    assert sample_seed(1234, "p0", 0) == sample_seed(1234, "p0", 0)
    seeds = {sample_seed(1234, f"p{p}", k) for p in range(50) for k in range(16)}
    assert len(seeds) == 800 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(1, "p0", 0) != sample_seed(2, "p0", 0)


def test_sample_key_covers_every_input() -> None:
    base = ({"id": "m", "revision": "r"}, "prompt", {"temperature": 0.6}, 7, 0)
    key = sample_key(*base)
    variants = [
        ({"id": "m", "revision": "r2"}, "prompt", {"temperature": 0.6}, 7, 0),
        ({"id": "m", "revision": "r"}, "prompt ", {"temperature": 0.6}, 7, 0),
        ({"id": "m", "revision": "r"}, "prompt", {"temperature": 0.7}, 7, 0),
        ({"id": "m", "revision": "r"}, "prompt", {"temperature": 0.6}, 8, 0),
        ({"id": "m", "revision": "r"}, "prompt", {"temperature": 0.6}, 7, 1),
    ]
    assert len({key, *(sample_key(*v) for v in variants)}) == 6
    assert shard_path("out", "a/b", "t t", 3) == Path("out/samples/a_b/t_t/shard-00003.parquet")
    assert safe_name("..") == "_"


def test_read_prompts_formats_and_errors(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "a", "prompt_id": 7}) + "\n\n" + json.dumps({"prompt": "b"}) + "\n")
    items = read_prompts(jsonl)
    assert [(i.prompt_id, i.prompt) for i in items] == [("7", "a"), ("p2", "b")]
    text = tmp_path / "p.txt"
    text.write_text("first\n\nsecond\n")
    assert [(i.prompt_id, i.prompt) for i in read_prompts(text)] == [("p0", "first"), ("p2", "second")]

    cases = {
        '{"prompt": "a"}\n{"prompt": \n': (2, None, "not valid JSON"),
        '{"prompt_id": "x"}\n': (1, "prompt", "missing"),
        '{"prompt": "a", "prompt_id": "x"}\n{"prompt": "b", "prompt_id": "x"}\n': (2, "prompt_id", "duplicate"),
        '{"prompt": "a", "references": [1]}\n': (1, "references", "object"),
    }
    for content, (line, field, reason) in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(SampleFormatError, match=reason) as caught:
            read_prompts(bad)
        assert (caught.value.line, caught.value.field, caught.value.path) == (line, field, str(bad))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SampleFormatError, match="UTF-8"):
        read_prompts(latin)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(SampleFormatError, match="no prompts"):
        read_prompts(empty)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.7, top_p=0.9),  # the study's kind: drawn within the nucleus
        SamplingParams(temperature=0.7, top_p=0.9, top_k=5, min_p=0.05),  # the whole row warped
        SamplingParams(temperature=1.3, top_p=1.0),
    ],
)
def test_row_draw_samples_the_warped_distribution(params: SamplingParams) -> None:
    """Many rows (one seeded uniform each) over one logits vector: frequencies match transformers' warped softmax,
    a filtered token is never drawn, and the same uniforms draw the same tokens."""
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0, -3.5]])
    rows = 20000
    theirs = LogitsProcessorList([TemperatureLogitsWarper(params.temperature)])  # transformers' own, in its order
    theirs += [TopKLogitsWarper(params.top_k)] if params.top_k else []
    theirs += [TopPLogitsWarper(params.top_p)] if params.top_p < 1.0 else []
    theirs += [MinPLogitsWarper(params.min_p)] if params.min_p else []
    expected = torch.softmax(theirs(torch.zeros(1, 1, dtype=torch.long), logits.clone()), dim=-1)[0].numpy()
    uniforms = torch.cat(
        [torch.rand(1, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in range(rows)]
    )
    draw = RowDraw(params)
    drawn = draw(logits.repeat(rows, 1), uniforms).numpy()
    frequencies = np.bincount(drawn, minlength=7) / rows
    if params.top_p < 1.0:
        assert expected[-2:].sum() == 0  # the filters removed the tail ...
    assert frequencies[expected == 0].sum() == 0  # ... and it is never drawn
    assert np.abs(frequencies - expected).max() < 0.015  # 20000 draws: standard error < 0.0036
    assert (draw(logits.repeat(rows, 1), uniforms).numpy() == drawn).all()


def test_drawing_within_the_nucleus_draws_what_the_whole_row_draws() -> None:
    """On a 262k vocabulary, from sharp rows (a one-token nucleus) to flat ones (a nucleus past the first
    candidates, grown), the nucleus-only draw gives the token the whole-row inverse CDF gives, row for row."""
    generator = torch.Generator().manual_seed(7)
    spread = torch.tensor([0.05, 0.5, 1.0, 2.0, 4.0, 8.0, 30.0]).repeat_interleave(8).unsqueeze(1)
    scores = torch.randn(spread.shape[0], 262_144, generator=generator) * spread
    uniforms = torch.rand(spread.shape[0], generator=generator, dtype=torch.float64)
    params = SamplingParams(temperature=0.8, top_p=0.95)
    fast = RowDraw(params)
    whole = RowDraw(params)
    whole.on_nucleus = False
    assert fast.on_nucleus
    assert torch.equal(fast(scores.clone(), uniforms), whole(scores.clone(), uniforms))
    edge = torch.full((2,), 1.0 - 2.0**-30, dtype=torch.float64)  # u rounding up to the total in float32
    for draw in (fast, whole):
        tokens = draw(scores[:2].clone(), edge)
        assert torch.isfinite(whole.warpers(None, scores[:2].clone()).gather(1, tokens.unsqueeze(1))).all()
