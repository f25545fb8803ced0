"""The partial-sort top-p filter keeps exactly the tokens transformers' TopPLogitsWarper keeps."""

from __future__ import annotations

import pytest
import torch
from transformers import TopKLogitsWarper, TopPLogitsWarper

from divtrace.generate.backends.nucleus import NucleusFilter, _nucleus_given_norm, nucleus


def kept(scores: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(scores)


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.95, 0.999])
@pytest.mark.parametrize("spread", [0.3, 3.0, 12.0])  # flat (huge nuclei) to sharp (one token)
def test_same_nucleus_as_transformers(top_p: float, spread: float) -> None:
    generator = torch.Generator().manual_seed(int(top_p * 1000) + int(spread * 10))
    scores = torch.randn(16, 50_000, generator=generator) * spread
    ours = NucleusFilter(top_p, candidates=64)(torch.zeros(16, 1, dtype=torch.long), scores)
    theirs = TopPLogitsWarper(top_p)(torch.zeros(16, 1, dtype=torch.long), scores)
    assert torch.equal(ours[kept(ours)], scores[kept(ours)])  # kept scores are unchanged
    for row in range(scores.shape[0]):
        if torch.equal(kept(ours)[row], kept(theirs)[row]):
            continue
        # Only a token within float32 rounding of the boundary may differ (transformers sums 50k float32
        # probabilities from the bottom; the filter sums from the top in float64).
        size, other = int(kept(ours)[row].sum()), int(kept(theirs)[row].sum())
        assert abs(size - other) == 1
        probs = torch.softmax(scores[row].double(), dim=-1).sort(descending=True).values
        assert abs(float(probs[: min(size, other)].sum()) - top_p) < 1e-6


def test_rows_with_large_nuclei_grow_past_the_first_candidates() -> None:
    scores = torch.zeros(3, 10_000)
    scores[0, 7] = 50.0  # one token holds all the mass
    scores[2, :100] = 10.0  # 99.6% of the mass on 100 tokens: a nucleus of ~90
    result = NucleusFilter(0.89995, candidates=16)(torch.zeros(3, 1, dtype=torch.long), scores)
    assert kept(result)[0].sum() == 1 and kept(result)[0, 7]
    assert kept(result)[1].sum() == 9000  # uniform: the 9000 tokens above the 1000 whose mass is <= 10%
    assert 85 <= kept(result)[2].sum() <= 100


def test_after_top_k_and_edge_values() -> None:
    generator = torch.Generator().manual_seed(3)
    scores = TopKLogitsWarper(5)(None, torch.randn(4, 1000, generator=generator))  # type: ignore[arg-type]
    ours = NucleusFilter(0.8)(None, scores)  # type: ignore[arg-type]
    assert torch.equal(kept(ours), kept(TopPLogitsWarper(0.8)(None, scores)))  # type: ignore[arg-type]
    assert torch.equal(NucleusFilter(1.0)(None, scores), scores)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_p"):
        NucleusFilter(0.0)


def test_the_float32_normaliser_decides_as_the_float64_one() -> None:
    """The nucleus found with a float32 logsumexp first (and again in float64 only for the rows near the boundary)
    is the one found with the float64 logsumexp for every row: 262k-token rows from flat to sharp, many of them
    with a boundary token of tiny probability."""
    generator = torch.Generator().manual_seed(11)
    spread = torch.tensor([0.02, 0.3, 1.0, 2.5, 6.0, 20.0]).repeat_interleave(16).unsqueeze(1)
    scores = torch.randn(spread.shape[0], 262_144, generator=generator) * spread + 15.0
    for top_p in (0.5, 0.95, 0.999):
        found = nucleus(scores, top_p)
        exact, _ = _nucleus_given_norm(scores, torch.logsumexp(scores.double(), -1, keepdim=True), top_p, 1024)
        assert torch.equal(found.sizes, exact.sizes)
        for row, size in enumerate(exact.sizes.tolist()):
            assert torch.equal(found.ids[row, :size], exact.ids[row, :size])
