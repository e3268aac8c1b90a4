"""Token ids for the simulated model's tokens (bench/llm/text.py: a token is a word).

One word is one id, so a prompt has as many ids as the engine counts tokens. The vocabulary
is fixed and the same in every process: the chat template's role tokens first, then every
word the workload can write (the tiny model's vocabulary, servicepool_dev.tiny_gguf.WORDS),
then any other word hashed into the rest of the vocabulary. Hashed ids are turned back into
words only in a process that has seen them; any other id decodes to UNKNOWN.
"""

from __future__ import annotations

import hashlib

from servicepool_dev.tiny_gguf import WORDS

VOCAB_SIZE = 131072
SPECIAL = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|developer|>"]
UNKNOWN = "<|unk|>"
_FIRST_WORD_ID = 16


def _fixed_vocabulary() -> dict[str, int]:
    vocabulary = {token: index for index, token in enumerate(SPECIAL)}
    for word in WORDS:
        vocabulary.setdefault(word, _FIRST_WORD_ID + len(vocabulary) - len(SPECIAL))
    return vocabulary


_IDS = _fixed_vocabulary()
_HASHED_BASE = _FIRST_WORD_ID + len(_IDS)
_WORDS = {index: token for token, index in _IDS.items()}


def token_id(token: str) -> int:
    """The id of one token."""
    known = _IDS.get(token)
    if known is not None:
        return known
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    index = _HASHED_BASE + int.from_bytes(digest, "big") % (VOCAB_SIZE - _HASHED_BASE)
    _WORDS.setdefault(index, token)
    return index


def encode(tokens: list[str]) -> list[int]:
    """The ids of a token list, one each."""
    return [token_id(t) for t in tokens]


def decode(ids: list[int]) -> list[str]:
    """The tokens of an id list (UNKNOWN for a hashed id this process has not seen)."""
    return [_WORDS.get(i, UNKNOWN) for i in ids]
