"""Test helper: a tiny random-weight RoBERTa-style encoder with a byte-level BPE tokenizer, built offline in a
directory laid out like ``microsoft/unixcoder-base`` (a plain transformers encoder: no sentence-transformers files).
"""

from __future__ import annotations

from pathlib import Path

#: What the BPE merges are learned from (any text still tokenizes: byte-level BPE has every byte).
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def mul(a, b):\n    total = a * b\n    return total\n",
    "for i in range(10):\n    print(i)\n",
    "while x > 0:\n    x -= 1\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "import math\nresult = math.sqrt(value)\n",
    "if n % 2 == 0:\n    return True\nelse:\n    return False\n",
]


def build_tiny_code_encoder(path: str | Path, seed: int = 0) -> Path:
    """Save a 2-layer, hidden-size-32 ``RobertaModel`` with random weights and its tokenizer into ``path``.

    Args:
        path: the directory to create (``save_pretrained`` layout: config, weights, tokenizer files).
        seed: torch seed of the random weights.

    Returns:
        ``path`` as a Path.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    path = Path(path)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    vocab = backend.get_vocab()
    backend.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=128,
    )
    config = RobertaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,  # RoBERTa's positions start after the padding index
        initializer_range=0.5,  # large random weights: clearly different vectors for different programs
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
    )
    torch.manual_seed(seed)
    model = RobertaModel(config).eval()  # with the pooler, as unixcoder-base (unused: token vectors are pooled)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
