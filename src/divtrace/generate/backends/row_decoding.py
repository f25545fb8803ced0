"""Batched sampling in which each row draws from its own random stream and a finished row leaves the batch.

``model.generate`` keeps computing every row of a batch until the last one ends (a finished row is fed padding),
and it samples all rows from one global random stream. No transformers option drops finished rows or gives each row
its own generator, so this module decodes by hand (the forward passes are the model's own, with its own key-value
cache): after each step the rows that ended (an end-of-sequence token, or a stop string at the end of what they
generated) are removed from the batch and from the cache (``Cache.batch_select_indices``), so the model computes
only live rows. On the quickstart's three checkpoints 35% of the token budget was such padding.

Each row draws its next token by inverse-CDF sampling with its own uniform for that step (:class:`RowDraw`): the
first token, in vocabulary order, whose cumulative probability under the warped distribution exceeds
``u * total``. That is exact sampling from the distribution transformers' sampling warpers define (temperature,
top-k, top-p, min-p, in transformers' order; :func:`sampling_warpers`), with one independent, reproducible random
stream per sample, whatever rows share its batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from divtrace.generate.backends.nucleus import NucleusFilter, nucleus
from divtrace.generate.params import SamplingParams

if TYPE_CHECKING:
    import torch
    from transformers import LogitsProcessorList, StoppingCriteria


def sampling_warpers(params: SamplingParams) -> LogitsProcessorList:
    """The warpers ``params`` asks for, in the order transformers' ``_get_logits_processor`` applies them when
    sampling: temperature, top-k (when set), top-p (when below 1; :class:`~.nucleus.NucleusFilter`, the rule of
    ``TopPLogitsWarper`` without a full sort), min-p (``MinPLogitsWarper``, when set). Each keeps at least one
    token, as transformers' do when not beam searching (``min_tokens_to_keep=1``)."""
    from transformers import LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper

    warpers = LogitsProcessorList([TemperatureLogitsWarper(params.temperature)])
    if params.top_k is not None:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        warpers.append(NucleusFilter(params.top_p))
    if params.min_p is not None:
        warpers.append(MinPLogitsWarper(params.min_p))  # after temperature, as transformers applies it
    return warpers


class RowDraw:
    """Draw one token per row from the distribution :func:`sampling_warpers` defines, with each row's uniform.

    With temperature and top-p only (the study's sampling), the draw works on each row's nucleus alone
    (:func:`~.nucleus.nucleus`, its top candidates) instead of the whole vocabulary: the same kept tokens, the same
    probabilities and the same vocabulary-order inverse CDF, so the same token up to float32 rounding of the
    normalisation (a uniform within about 1e-7 of a boundary). Other settings warp the whole row.
    """

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.warpers = sampling_warpers(params)
        self.on_nucleus = params.top_p < 1.0 and params.top_k is None and params.min_p is None

    def __call__(self, scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """The drawn token of each row: ``scores`` ``[rows, vocab]`` float32 logits (overwritten: they are
        divided by the temperature in place), ``uniforms`` ``[rows]`` in [0, 1). Returns ``[rows]`` token ids
        (int64)."""
        if self.on_nucleus:
            return self._draw_in_nucleus(scores, uniforms)
        import torch

        warped = self.warpers(None, scores)  # no warper reads the input ids
        cdf = torch.softmax(warped, dim=-1).cumsum_(dim=-1)
        # Tokens with probability 0 (filtered) never come first: their cumulative value equals their predecessor's.
        threshold = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(1)
        kept = torch.isfinite(warped)
        last_kept = cdf.shape[1] - 1 - kept.flip(1).int().argmax(dim=1, keepdim=True)
        position = torch.searchsorted(cdf, threshold, right=True)
        return torch.minimum(position, last_kept).squeeze(1)  # u rounding up to the total: the last kept token

    def _draw_in_nucleus(self, scores: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        import torch

        scaled = scores.div_(self.params.temperature)  # transformers' TemperatureLogitsWarper, in place
        found = nucleus(scaled, self.params.top_p)
        width = int(found.sizes.max())
        in_nucleus = found.kept(width)
        # the nucleus in vocabulary order (positions outside it last), as the whole-row inverse CDF walks it
        vocab_order = found.ids[:, :width].masked_fill(~in_nucleus, scores.shape[1]).argsort(dim=1)
        ids = found.ids[:, :width].gather(1, vocab_order)
        kept_scores = found.scores[:, :width].masked_fill(~in_nucleus, float("-inf")).gather(1, vocab_order)
        cdf = torch.softmax(kept_scores, dim=-1).cumsum_(dim=-1)
        threshold = (uniforms.to(cdf.dtype) * cdf[:, -1]).unsqueeze(1)
        position = torch.searchsorted(cdf, threshold, right=True)
        position = torch.minimum(position, found.sizes.unsqueeze(1) - 1)
        return ids.gather(1, position).squeeze(1)


def _cache_keyword(model: Any) -> str:
    """The name of the forward pass' key-value cache argument (``cache`` since transformers 5.2x, else
    ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def decode_rows(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    uniforms: torch.Tensor,
    draw: RowDraw,
    *,
    end_ids: Sequence[int],
    banned_ids: Sequence[int] = (),
    stop: StoppingCriteria | None = None,
    on_step: Callable[[], None] | None = None,
) -> list[list[int]]:
    """Sample up to ``uniforms.shape[1]`` new tokens for each row of a left-padded batch.

    Args:
        model: a causal LM (transformers), in eval mode.
        input_ids, attention_mask: ``[rows, length]`` the left-padded prompts.
        uniforms: ``[rows, max_new_tokens]`` float64 uniforms; row ``r`` draws step ``t`` with ``uniforms[r, t]``.
        draw: the sampler.
        end_ids: end-of-sequence ids: a row that draws one ends (the token is kept).
        banned_ids: ids whose scores are set to -inf before drawing (end-of-sequence when ignoring it, as
            transformers' ``min_new_tokens`` does).
        stop: transformers' ``StopStringCriteria`` (or any stopping criterion), applied to each row's generated
            tokens only: a row whose output ends in a stop string ends.
        on_step: called after every decoding step.

    Returns each row's new tokens, in row order: a row that ended stops at its last token.
    """
    import torch

    rows, max_new_tokens = uniforms.shape
    cache_keyword = _cache_keyword(model)
    live = torch.arange(rows, device=input_ids.device)  # the batch row each live row is
    new_tokens: list[list[int]] = [[] for _ in range(rows)]
    generated = input_ids.new_empty((rows, 0))  # each live row's last new tokens, for ``stop``
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill_(attention_mask == 0, 0)
    ends = torch.tensor(list(end_ids), dtype=torch.long, device=input_ids.device)
    banned = list(banned_ids)
    # the stop criterion reads only the last tokens (transformers' StopStringCriteria: its maximum_token_len)
    window: int | None = getattr(stop, "maximum_token_len", None)
    cache = None
    step_input, step_positions = input_ids, positions
    for step in range(max_new_tokens):
        output = model(
            input_ids=step_input,
            attention_mask=attention_mask,
            position_ids=step_positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_keyword: cache},
        )
        cache = output.cache if "cache" in output else output.past_key_values  # renamed in transformers 5.2x
        scores = output.logits[:, -1, :].float()
        if banned:
            scores[:, banned] = float("-inf")
        tokens = draw(scores, uniforms[live, step])
        for row, token in zip(live.tolist(), tokens.tolist(), strict=True):
            new_tokens[row].append(token)
        if on_step is not None:
            on_step()
        if step == max_new_tokens - 1:
            break
        ended = torch.isin(tokens, ends)
        if stop is not None:
            generated = torch.cat([generated, tokens.unsqueeze(1)], dim=1)
            if window:
                generated = generated[:, -window:]
            ended |= stop(generated, scores)
        if bool(ended.any()):
            going = (~ended).nonzero().squeeze(1)
            if not going.numel():
                break
            cache.batch_select_indices(going)
            live, tokens, generated = live[going], tokens[going], generated[going]
            attention_mask, step_positions = attention_mask[going], step_positions[going]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
        step_input, step_positions = tokens.unsqueeze(1), step_positions[:, -1:] + 1
    return new_tokens
