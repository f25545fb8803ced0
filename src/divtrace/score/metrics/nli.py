"""NLI diversity: how much the outputs of a group fail to entail one another (README, "Metrics": nli).

Rules (the defaults are those of the code that produced the published numbers; every option is an
:class:`~divtrace.score.settings.NLISettings` field, recorded in ``settings()``):

- Sentences (:func:`split_sentences`): "\\r" and "\\t" become spaces, the text is split on
  :data:`SENTENCE_SPLIT`, pieces are stripped and empty ones dropped. An empty or whitespace-only output has no
  sentence.
- Pairs: every unordered pair of outputs (i < j) of a group; a group with more than ``pairs_across`` pairs
  (across-input scoring over N prompts has N(N-1)/2) is scored on a seeded subset of exactly ``pairs_across``
  (:func:`sampled_pairs`), unless ``pairs_across`` is ``"all"``. A pair where either output has no sentence is
  skipped: it is not scored at all.
- Positions: the aligned sentence positions ``p < n = min(len(s_i), len(s_j))``; all of them when
  ``n <= sentences_per_pair``, otherwise ``sentences_per_pair`` of them drawn uniformly without replacement
  (:func:`draw_positions`). ``position_draws`` says which generator draws: ``"per-pair"`` (default) seeds one per
  pair from (seed, i, j, the two texts) (:func:`aligned_positions`), so a pair's positions never depend on the rest
  of the batch; ``"stream"`` uses one ``random.Random(seed)`` per ``score_groups`` call, advanced only by pairs with
  more than ``sentences_per_pair`` common positions, group after group and pair after pair in (i, j) order, as the
  study's code does with its single generator.
- Similarity of a position: ``P(entailment) - P(contradiction)`` (softmax over the logits; label order read from
  the model's ``config.id2label``) for (s_i[p], s_j[p]) and for (s_j[p], s_i[p]), averaged.
- Pooling: ``"positions"`` (default): diversity = 1 - mean of every (pair, position) similarity of the group in
  one list, so a pair with 3 positions weighs three times a pair with 1; ``"pairs"``: 1 - mean over pairs of each
  pair's mean similarity. Range [0, 2], higher is more diverse.
- A group without any scorable pair (fewer than 2 outputs, or at most one output with a sentence) scores NaN.

Where divtrace departs from the study's code, deliberately: the code scores a group without a scorable pair 0.0
(the least diverse value possible, for nothing measured) where divtrace gives NaN; the code draws positions from
one generator for a whole run (the across-input groups first, then every prompt), so a prompt's positions depend
on everything scored before it, which ``"stream"`` reproduces only when given that same sequence of groups; and the
code scores every pair across inputs (``pairs_across: all``; the default 2,000 caps them here).

Every premise/hypothesis pair of every group is collected first, identical pairs are classified once, and the
classifier runs over them longest first in batches of ``NLISettings.batch_size``. Progress, when the scoring
context carries a sink, is reported after every batch in premise/hypothesis pairs classified (count ``pairs``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from divtrace.errors import ModelLoadError
from divtrace.progress import PAIRS, ProgressSink, emit
from divtrace.score.metrics._base import STUDY_SOURCE, Metric, ScoringContext, ValueRange
from divtrace.score.metrics._registry import register_metric
from divtrace.score.settings import NLISettings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Outputs are split into sentences on this pattern (README, "Metrics": NLI); empty pieces are dropped after stripping.
SENTENCE_SPLIT = r"[.!?]+\s+|\n+"
_SENTENCE_RE = re.compile(SENTENCE_SPLIT)
#: What happens to a text before it is split (recorded in the settings).
SENTENCE_PREPARE = "'\\r' and '\\t' replaced by spaces"


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, as the study's code splits them.

    "\\r" and "\\t" are replaced by spaces; the pieces between matches of :data:`SENTENCE_SPLIT` (end punctuation
    followed by whitespace, or newlines) are stripped and empty ones dropped. A final sentence keeps its punctuation
    when nothing follows it. When no piece is left the stripped text is the one sentence (``"... "`` -> ``["..."]``);
    an empty or whitespace-only text has no sentence (``[]``).
    """
    cleaned = text.replace("\r", " ").replace("\t", " ")
    sentences = [piece.strip() for piece in _SENTENCE_RE.split(cleaned) if piece.strip()]
    if sentences:
        return sentences
    stripped = cleaned.strip()
    return [stripped] if stripped else []


def draw_positions(rng: random.Random, n_common: int, sentences_per_pair: int) -> list[int]:
    """The aligned positions of one pair drawn with ``rng``, in the order drawn.

    ``list(range(n_common))`` without touching ``rng`` when ``n_common <= sentences_per_pair``; otherwise
    ``rng.sample(range(n_common), sentences_per_pair)``: distinct positions, uniformly without replacement, advancing
    ``rng`` as the study's code does.
    """
    if n_common <= sentences_per_pair:
        return list(range(n_common))
    return rng.sample(range(n_common), sentences_per_pair)


def aligned_positions(
    seed: int, text_i: str, text_j: str, i: int, j: int, n_common: int, sentences_per_pair: int
) -> list[int]:
    """The aligned sentence positions scored for the pair (i, j) of a group under ``position_draws="per-pair"``.

    Args:
        seed: ``NLISettings.seed``.
        text_i, text_j: the two outputs (i < j).
        i, j: their indices in the group.
        n_common: ``min(len(sentences_i), len(sentences_j))``.
        sentences_per_pair: the most positions to take.

    Returns:
        In increasing order, :func:`draw_positions` with a ``random.Random`` seeded from a SHA-256 of
        (seed, i, j, text_i, text_j): all of ``range(n_common)`` when ``n_common <= sentences_per_pair``.
    """
    digest = hashlib.sha256(json.dumps([seed, "positions", i, j, text_i, text_j], ensure_ascii=False).encode())
    rng = random.Random(int.from_bytes(digest.digest()[:16], "little"))
    return sorted(draw_positions(rng, n_common, sentences_per_pair))


def sampled_pairs(seed: int, texts: Sequence[str], max_pairs: int | None) -> list[tuple[int, int]]:
    """The pairs (i < j) of a group that are scored: all of them (always when ``max_pairs`` is None), or a seeded
    subset of ``max_pairs``.

    When the group has more than ``max_pairs`` pairs, exactly ``max_pairs`` distinct pairs are drawn without
    replacement by a generator seeded from (seed, the group's texts), returned in (i, j) order. Memory stays
    O(len(texts) + max_pairs) however large the group.
    """
    n = len(texts)
    total = n * (n - 1) // 2
    if max_pairs is None or total <= max_pairs:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    hasher = hashlib.sha256(json.dumps([seed, "pairs", n]).encode())
    for text in texts:
        encoded = text.encode()
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    rng = np.random.default_rng(int.from_bytes(hasher.digest()[:16], "little"))
    linear = np.sort(rng.choice(total, size=max_pairs, replace=False))
    # Row i of the upper triangle starts at linear index i*n - i*(i+1)/2.
    rows = np.arange(n, dtype=np.int64)
    starts = rows * n - rows * (rows + 1) // 2
    first = np.searchsorted(starts, linear, side="right") - 1
    second = linear - starts[first] + first + 1
    return [(int(a), int(b)) for a, b in zip(first, second, strict=True)]


def nli_label_indices(id2label: dict[Any, str], model: str) -> tuple[int, int]:
    """(entailment index, contradiction index) from a config's ``id2label``, matched case-insensitively.

    A label containing ``entail`` is entailment (``not_entailment``-style labels lose to a plain one), a label
    containing ``contradict`` is contradiction. Raises ModelLoadError naming ``model`` and the labels found when
    either is missing or ambiguous.
    """
    labels = {int(index): str(label) for index, label in (id2label or {}).items()}

    def find(stem: str) -> int | None:
        hits = [index for index, label in labels.items() if stem in label.lower()]
        if len(hits) > 1:
            hits = [index for index in hits if not re.match(r"no[nt][\W_]*" + stem, labels[index].lower())]
        return hits[0] if len(hits) == 1 else None

    entail, contradict = find("entail"), find("contradict")
    if entail is None or contradict is None or entail == contradict:
        found = ", ".join(f"{index}: {label!r}" for index, label in sorted(labels.items())) or "none"
        raise ModelLoadError(
            f"NLI model {model!r} does not name its entailment and contradiction labels in config.id2label "
            f"(labels found: {found}). Pass --nli-model with an id or local path of an MNLI classifier whose "
            "config labels them (e.g. roberta-large-mnli)."
        )
    return entail, contradict


@dataclass
class LoadedNLIModel:
    """An MNLI classifier ready to run: tokenizer, model (eval mode, on ``device``) and its label indices."""

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    device: str
    entailment: int
    contradiction: int
    #: Inputs are truncated to this many tokens: ``NLISettings.max_length`` capped at what the model accepts.
    max_length: int


_LOADED: dict[tuple[str, str | None, str], LoadedNLIModel] = {}


def resolve_device(device: str | None) -> str:
    """``device`` itself, or ``cuda`` when it is None and a GPU is available, else ``cpu``."""
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_nli_model(settings: NLISettings) -> LoadedNLIModel:
    """The classifier of ``settings`` (model id or local path, revision), loaded once per process and device.

    The config is read first, so a model without entailment/contradiction labels fails before its weights load.
    Weights are used in float32 whatever dtype they were saved in. Raises ModelLoadError naming the model, why,
    and how to fix it when anything cannot be loaded (not found, offline without a cached copy, not a classifier).
    """
    device = resolve_device(settings.device)
    key = (settings.model, settings.revision, device)
    if key in _LOADED:
        return _LOADED[key]
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    name = settings.model
    try:
        config = AutoConfig.from_pretrained(name, revision=settings.revision)
    except Exception as err:  # OSError (not found / offline), ValueError (not a model), HF hub errors
        raise _load_error(name, err) from err
    entailment, contradiction = nli_label_indices(getattr(config, "id2label", None) or {}, name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=settings.revision)
        model = AutoModelForSequenceClassification.from_pretrained(name, revision=settings.revision, config=config)
    except Exception as err:
        raise _load_error(name, err) from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"NLI model {name!r}: its tokenizer has no padding token, so it cannot batch")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    try:
        model = model.float().to(device).eval()
    except Exception as err:  # e.g. "cuda" asked for on a machine without a GPU
        raise ModelLoadError(f"NLI model {name!r} cannot be moved to device {device!r}: {err}") from err
    limits = [settings.max_length, getattr(model.config, "max_position_embeddings", None)]
    if 0 < (tokenizer.model_max_length or 0) < 1_000_000:  # tokenizers without a limit report a huge sentinel
        limits.append(tokenizer.model_max_length)
    max_length = min(int(limit) for limit in limits if limit)
    loaded = LoadedNLIModel(tokenizer, model, device, entailment, contradiction, max_length)
    _LOADED[key] = loaded
    return loaded


def _load_error(name: str, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"cannot load NLI model {name!r} ({type(err).__name__}: {err}). Pass --nli-model with the id (needs the "
        "Hugging Face hub, or a cached copy) or the local path of an MNLI sequence-pair classifier, such as "
        "roberta-large-mnli."
    )


@dataclass
class NLIStats:
    """What the last ``score_groups`` call did.

    Attributes:
        pairs_per_group: output pairs considered in each group, in group order (capped at ``pairs_across``).
        skipped_pairs_per_group: of those, the pairs skipped because an output has no sentence.
        positions: aligned (pair, position) similarities computed over all groups.
        classifier_inputs: premise/hypothesis inputs over all pairs, positions and both directions.
        unique_inputs: distinct (premise, hypothesis) inputs actually classified.
        batches: classifier batches run.
    """

    pairs_per_group: list[int] = field(default_factory=list)
    skipped_pairs_per_group: list[int] = field(default_factory=list)
    positions: int = 0
    classifier_inputs: int = 0
    unique_inputs: int = 0
    batches: int = 0


@register_metric
class NLIDiversity(Metric):
    """NLI diversity: 1 - mean P(entailment) - P(contradiction) over aligned sentences of output pairs.

    The rules are in the module docstring (:mod:`divtrace.score.metrics.nli`); by default every (pair, position)
    similarity of a group is pooled into one mean (``pooling="positions"``), positions are drawn per pair with seed
    1234, at most 3 per pair, and pairs with an empty output are skipped.

    Args:
        settings: the classifier, sampling and pooling options; ``NLISettings()`` (roberta-large-mnli) when None.
        **overrides: ``NLISettings`` fields replacing those of ``settings`` (``NLIDiversity(model="path")``).

    Attributes:
        nli_settings: the effective :class:`NLISettings`.
        last_stats: :class:`NLIStats` of the latest ``score_groups`` call.
    """

    name = "nli"
    source = STUDY_SOURCE
    description = "1 - mean P(entail) - P(contradict) over aligned sentences of output pairs, pooled (MNLI model)"
    uses_embeddings = False
    suitable_for_code = False
    needs = "MNLI classifier (--nli-model)"
    value_range = ValueRange(0.0, 2.0)  # each similarity P(entail) - P(contradict) lies in [-1, 1]
    progress_unit = PAIRS
    settings_type = NLISettings

    def __init__(self, settings: NLISettings | None = None, **overrides: Any) -> None:
        base = settings or NLISettings()
        if overrides:
            base = NLISettings(**{**base.model_dump(), **overrides})
        capped = base.pairs_across != "all" and base.pairs_across < 1
        if base.sentences_per_pair < 1 or base.batch_size < 1 or capped or base.max_length < 1:
            raise ValueError("NLI needs sentences_per_pair, batch_size, pairs_across and max_length >= 1")
        self.nli_settings = base
        self.last_stats = NLIStats()

    def settings(self) -> dict[str, Any]:
        """Every NLI setting that determines the numbers (model, revision, max_length, sentences_per_pair, seed,
        pooling, position_draws, pairs_across), the sentence rule and, once the model is loaded, the effective
        truncation length."""
        recorded = {
            **self.nli_settings.identity(),
            "sentence_prepare": SENTENCE_PREPARE,
            "sentence_split": SENTENCE_SPLIT,
            "empty_pairs": "skipped",
            "no_scorable_pair": "nan",
        }
        key = (self.nli_settings.model, self.nli_settings.revision, resolve_device(self.nli_settings.device))
        if key in _LOADED:
            recorded["effective_max_length"] = _LOADED[key].max_length
        return recorded

    def prepare(self) -> None:
        load_nli_model(self.nli_settings)

    def score_groups(self, groups: Sequence[Sequence[str]], context: ScoringContext) -> np.ndarray:
        """Diversity of each group, float64, in the order given (rules: module docstring).

        A group without a scorable pair (fewer than 2 texts, or fewer than 2 with a sentence) scores NaN.
        ``last_stats`` records what was done. ``context.progress``, when set, gets events counting the distinct
        premise/hypothesis pairs classified (``pairs``): 0 before the classifier runs, then after every batch.
        """
        settings = self.nli_settings
        by_pair = settings.pooling == "pairs"
        stream = random.Random(settings.seed) if settings.position_draws == "stream" else None
        inputs: dict[tuple[str, str], int] = {}
        # Per group: the classifier input of each direction, and the unit (a position, or a pair) it averages into.
        plans: list[tuple[np.ndarray, np.ndarray]] = []
        stats = NLIStats()
        sentence_cache: dict[str, list[str]] = {}

        def sentences(text: str) -> list[str]:
            if text not in sentence_cache:
                sentence_cache[text] = split_sentences(text)
            return sentence_cache[text]

        for group in groups:
            texts = list(group)
            cap = None if settings.pairs_across == "all" else settings.pairs_across
            pairs = sampled_pairs(settings.seed, texts, cap)
            input_ids: list[int] = []
            unit_ids: list[int] = []
            scored_pairs = scored_positions = skipped = 0
            for i, j in pairs:
                first, second = sentences(texts[i]), sentences(texts[j])
                n_common = min(len(first), len(second))
                if n_common == 0:
                    skipped += 1
                    continue
                if stream is not None:
                    positions = draw_positions(stream, n_common, settings.sentences_per_pair)
                else:
                    positions = aligned_positions(
                        settings.seed, texts[i], texts[j], i, j, n_common, settings.sentences_per_pair
                    )
                for p in positions:
                    unit = scored_pairs if by_pair else scored_positions
                    for premise, hypothesis in ((first[p], second[p]), (second[p], first[p])):
                        input_ids.append(inputs.setdefault((premise, hypothesis), len(inputs)))
                        unit_ids.append(unit)
                    scored_positions += 1
                scored_pairs += 1
            plans.append((np.asarray(input_ids, dtype=np.int64), np.asarray(unit_ids, dtype=np.int64)))
            stats.pairs_per_group.append(len(pairs))
            stats.skipped_pairs_per_group.append(skipped)
            stats.positions += scored_positions
            stats.classifier_inputs += len(input_ids)

        stats.unique_inputs = len(inputs)
        scores, stats.batches = self._classify(list(inputs), context.progress)
        self.last_stats = stats

        result = np.full(len(plans), np.nan, dtype=np.float64)
        for g, (plan_inputs, plan_units) in enumerate(plans):
            if plan_inputs.size == 0:
                continue
            unit_sum = np.bincount(plan_units, weights=scores[plan_inputs])
            unit_count = np.bincount(plan_units)
            result[g] = 1.0 - float(np.mean(unit_sum / unit_count))
        return result

    def _classify(self, pairs: list[tuple[str, str]], progress: ProgressSink | None) -> tuple[np.ndarray, int]:
        """P(entailment) - P(contradiction) of each (premise, hypothesis), float64, and the number of batches;
        progress in pairs before the first batch and after each."""
        scores = np.empty(len(pairs), dtype=np.float64)
        emit(progress, 0, len(pairs), PAIRS)
        if not pairs:
            return scores, 0
        import torch

        loaded = load_nli_model(self.nli_settings)
        size = self.nli_settings.batch_size
        order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][0]) + len(pairs[k][1]), reverse=True)
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        done = 0
        with torch.inference_mode():
            for batch in batches:
                encoded = loaded.tokenizer(
                    [pairs[k][0] for k in batch],
                    [pairs[k][1] for k in batch],
                    truncation=True,
                    max_length=loaded.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(loaded.device)
                logits = loaded.model(**encoded).logits
                probabilities = torch.softmax(logits.double(), dim=-1).cpu().numpy()
                scores[batch] = probabilities[:, loaded.entailment] - probabilities[:, loaded.contradiction]
                done += len(batch)
                emit(progress, done, len(pairs), PAIRS)
        return scores, len(batches)
