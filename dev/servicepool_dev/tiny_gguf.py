"""A tiny llama-architecture GGUF model with random weights, for real engines in tests.

`write_tiny_gguf(path)` writes the same file every time (fixed seed): 4 layers, hidden size
512, 8 heads, f16 weights, about 40 MB, loaded by llama-server in a fraction of a second. Its
answers are noise; what it is for is real prefill, decoding, slots and KV cache.

The vocabulary makes token counts exact. It is a SentencePiece-style `llama` vocabulary:
`<unk>`, `<s>` (BOS, added to every prompt), `</s>`, the 256 byte-fallback tokens, `▁`, the
19 letters of the words, and `▁` + every prefix of the 4,900 `WORDS`. The words are
consonant-vowel-consonant-vowel ("bada" .. "zuzu", 14 consonants x 5 vowels twice). Every
multi-letter piece starts with `▁` (a space), so no merge crosses a word boundary and no
pair of letters merges inside a word except onto its `▁` head: a text of N words separated
by single spaces tokenizes to exactly N tokens (`words_text`). Anything else (capitals,
digits, punctuation) falls back to bytes.

Its chat template joins the messages' contents with single spaces and adds nothing else,
so a chat request whose messages hold N words in all is a prompt of N + 1 tokens (BOS).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import gguf
import numpy as np

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
WORDS: tuple[str, ...] = tuple(
    "".join(letters) for letters in itertools.product(CONSONANTS, VOWELS, CONSONANTS, VOWELS)
)
SPACE = "\u2581"  # SentencePiece's visible space, "▁"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if not loop.first %} {% endif %}"
    "{{ message['content'] }}{% endfor %}"
)
LAYERS = 4
HIDDEN = 512
HEADS = 8
FEED_FORWARD = 1408
CONTEXT = 4096
SEED = 23


def words_text(count: int, start: int = 0) -> str:
    """`count` words from WORDS (from index `start`, wrapping) joined by single spaces.

    It tokenizes to exactly `count` tokens (plus BOS when the engine adds it).
    """
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(count))


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """The token pieces, their scores and their types, in id order."""
    pieces = ["<unk>", "<s>", "</s>", *(f"<0x{byte:02X}>" for byte in range(256))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    words = dict.fromkeys([SPACE, *sorted(set(CONSONANTS + VOWELS))])
    for word in WORDS:
        words.update(dict.fromkeys(SPACE + word[:length] for length in range(1, len(word) + 1)))
    pieces += list(words)
    types += [gguf.TokenType.NORMAL] * len(words)
    scores = [0.0] * 259 + [-float(rank) for rank in range(len(words))]
    return pieces, scores, [int(kind) for kind in types]


def random_tensors(vocab_size: int) -> dict[str, np.ndarray]:
    """Every tensor of the model, normal(0, 0.02) in f16; norms are ones in f32."""
    rng = np.random.default_rng(SEED)

    def matrix(rows: int, columns: int) -> np.ndarray:
        return (rng.standard_normal((rows, columns), dtype=np.float32) * 0.02).astype(np.float16)

    ones = np.ones(HIDDEN, dtype=np.float32)
    tensors = {"token_embd.weight": matrix(vocab_size, HIDDEN)}
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        tensors |= {
            f"{block}.attn_norm.weight": ones,
            f"{block}.attn_q.weight": matrix(HIDDEN, HIDDEN),
            f"{block}.attn_k.weight": matrix(HIDDEN, HIDDEN),
            f"{block}.attn_v.weight": matrix(HIDDEN, HIDDEN),
            f"{block}.attn_output.weight": matrix(HIDDEN, HIDDEN),
            f"{block}.ffn_norm.weight": ones,
            f"{block}.ffn_gate.weight": matrix(FEED_FORWARD, HIDDEN),
            f"{block}.ffn_up.weight": matrix(FEED_FORWARD, HIDDEN),
            f"{block}.ffn_down.weight": matrix(HIDDEN, FEED_FORWARD),
        }
    tensors["output_norm.weight"] = ones
    tensors["output.weight"] = matrix(vocab_size, HIDDEN)
    return tensors


def write_tiny_gguf(path: Path) -> Path:
    """Write the model to `path` (same bytes every time) and return `path`."""
    pieces, scores, types = vocabulary()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("servicepool-tiny-random")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(pieces))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    for name, tensor in random_tensors(len(pieces)).items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
