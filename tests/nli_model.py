"""Test helper: a tiny random-weight MNLI-shaped classifier with a real tokenizer, built offline in a directory."""

from __future__ import annotations

from pathlib import Path

#: roberta-large-mnli's label order.
MNLI_LABELS = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}

#: Words the tokenizer knows (anything else is [UNK]); the tests write their outputs with them.
VOCABULARY = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "ran",
    "in",
    "park",
    "it",
    "is",
    "raining",
    "sun",
    "shines",
    "today",
    "birds",
    "sing",
    "loudly",
    "water",
    "boils",
    "at",
    "hundred",
    "degrees",
    "paris",
    "capital",
    "of",
    "france",
    "two",
    "plus",
    "equals",
    "four",
    "sky",
    "blue",
    "grass",
    "green",
    "yes",
    "no",
    "maybe",
]


def build_tiny_nli_model(path: str | Path, id2label: dict[int, str] | None = None, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-size-32 BERT sequence-pair classifier with random weights into ``path``.

    Args:
        path: the directory to create (``save_pretrained`` layout: config, weights, tokenizer files).
        id2label: the config's label names; :data:`MNLI_LABELS` when None; ``{}`` keeps transformers' default
            ``LABEL_0..LABEL_2``. The same ``seed`` gives the same weights whatever the labels.
        seed: torch seed of the random weights.

    Returns:
        ``path`` as a Path.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    path = Path(path)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: index for index, token in enumerate([*specials, *dict.fromkeys(VOCABULARY)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    )

    labels = MNLI_LABELS if id2label is None else id2label
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.5,  # large random weights: clearly different probabilities for different inputs
        pad_token_id=vocab["[PAD]"],
        num_labels=3,
        **({"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}),
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
