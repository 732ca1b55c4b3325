"""A replaced file is whole or untouched: never half written, no temporary file left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.atomic_file import replaced_binary, replaced_text


def test_text_replaces_the_target_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old\n", encoding="utf-8")
    with replaced_text(target) as fh:
        fh.write("new ü\n")
        assert target.read_text(encoding="utf-8") == "old\n"  # not yet: still the old file
    assert target.read_text(encoding="utf-8") == "new ü\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_binary_creates_a_missing_target(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    with replaced_binary(target) as fh:
        fh.write(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "c.txt"
    target.write_text("kept\n", encoding="utf-8")

    def write_half() -> None:
        with replaced_text(target) as fh:
            fh.write("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk"):
        write_half()
    assert target.read_text(encoding="utf-8") == "kept\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]
