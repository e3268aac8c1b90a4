"""The engine tier's tooling without an engine: the tiny model's vocabulary and file, and the
llama-server command line the launcher builds (tests/engines runs them for real)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from servicepool_dev.llama_engines import EngineOptions, engine_command, llama_server_binary
from servicepool_dev.tiny_gguf import SPACE, WORDS, vocabulary, words_text, write_tiny_gguf


def test_every_word_piece_can_be_reached_by_merging_onto_its_space() -> None:
    pieces, _, _ = vocabulary()
    known = set(pieces)
    multi_letter = [piece for piece in pieces[259:] if len(piece) > 1]
    # SentencePiece merges adjacent pairs present in the vocabulary: each "▁word" is reached
    # through "▁w", "▁wo", ... and nothing merges across a space or between plain letters.
    assert all(piece.startswith(SPACE) and SPACE not in piece[1:] for piece in multi_letter)
    assert all(piece[:length] in known for piece in multi_letter for length in range(2, 5))
    assert all(SPACE + word in known for word in WORDS)


def test_special_and_byte_tokens_sit_where_llama_expects_them() -> None:
    pieces, _, types = vocabulary()
    assert pieces[:3] == ["<unk>", "<s>", "</s>"]
    assert pieces[3 + 0x0A] == "<0x0A>"
    assert len(pieces) == len(set(pieces)) == len(types)


def test_words_text_is_count_words_separated_by_single_spaces() -> None:
    text = words_text(5, start=len(WORDS) - 2)
    assert text.split(" ") == [WORDS[-2], WORDS[-1], WORDS[0], WORDS[1], WORDS[2]]


def test_the_model_file_is_the_same_every_time(tmp_path: Path) -> None:
    first = write_tiny_gguf(tmp_path / "a.gguf").read_bytes()
    assert first == write_tiny_gguf(tmp_path / "b.gguf").read_bytes()
    assert first[:4] == b"GGUF"


def test_engine_command_sets_every_knob_explicitly() -> None:
    options = EngineOptions(slots=3, context=3072, cache_ram_mib=5, threads=1, extra=("-v",))
    command = engine_command(Path("/bin/llama-server"), Path("m.gguf"), 8123, options)
    pairs = dict(itertools.pairwise(command))
    assert pairs["--parallel"] == "3"
    assert pairs["--ctx-size"] == "3072"
    assert pairs["--cache-ram"] == "5"
    assert pairs["--threads"] == pairs["--threads-batch"] == "1"
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123"
    assert {"--metrics", "--slots", "--no-webui"} <= set(command)
    assert command[-1] == "-v"


def test_the_binary_named_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICEPOOL_LLAMA_SERVER", "/opt/llama/llama-server")
    assert llama_server_binary(Path("/nonexistent/build.sh")) == Path("/opt/llama/llama-server")
