"""Float32 linear layers through oneDNN: the same layer up to float rounding, and each row's result independent of
the rows it shares a batch with (one row included)."""

from __future__ import annotations

import copy

import pytest
import torch

from divtrace.generate.backends.onednn_linear import onednn_available, to_onednn_linear

pytestmark = pytest.mark.skipif(not onednn_available(), reason="torch without oneDNN")


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(640, 2048),
        torch.nn.GELU(),
        torch.nn.Linear(2048, 640, bias=False),
        torch.nn.Linear(640, 50_000, bias=False),  # a wide output layer, as a language model's
    )


def test_the_same_layers_up_to_rounding() -> None:
    dense = model()
    fast = copy.deepcopy(dense)
    assert to_onednn_linear(fast) == 3
    assert not any(isinstance(m, torch.nn.Linear) for m in fast.modules())
    x = torch.randn(5, 7, 640)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), dense(x), rtol=1e-4, atol=1e-4)
        assert fast(x).shape == (5, 7, 50_000)


def test_a_row_gets_the_same_result_alone_in_any_batch_and_in_a_prompt() -> None:
    fast = model()
    to_onednn_linear(fast)
    x = torch.randn(64, 1, 640)
    with torch.inference_mode():
        batch = fast(x)
        assert all(torch.equal(fast(x[i : i + 1]), batch[i : i + 1]) for i in range(64))  # one row (decoding)
        for rows in ([3, 9], [0, 5, 7, 11, 40, 63], list(range(1, 64, 2))):
            assert torch.equal(fast(x[rows]), batch[rows])
        prompts = torch.randn(6, 13, 640)  # prefill: several positions per row
        together = fast(prompts)
        assert all(torch.equal(fast(prompts[i : i + 1]), together[i : i + 1]) for i in range(6))


def test_other_layers_are_left_alone() -> None:
    mixed = torch.nn.Sequential(torch.nn.Linear(4, 4).to(torch.bfloat16), torch.nn.Embedding(10, 4))
    assert to_onednn_linear(mixed) == 0
    assert isinstance(mixed[0], torch.nn.Linear)
