"""BERT's special tokens and the names of a vocabulary's files."""

from __future__ import annotations

import re

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"  # marks a piece that continues a word
BRACKETED = re.compile(r"^\[[^\[\]\s]+\]$")  # [CLS], [unused7], ...: reserved, never text

VOCAB_NAME = "vocab.txt"  # one token per line; the line number is the id
TOKENIZER_NAME = "tokenizer.json"  # the `tokenizers` pipeline
HF_CONFIG_NAME = "tokenizer_config.json"  # lets transformers read the options
# What goes beside a model's weights so that transformers' AutoTokenizer loads it as it is.
TOKENIZER_FILES = (VOCAB_NAME, TOKENIZER_NAME, HF_CONFIG_NAME)
