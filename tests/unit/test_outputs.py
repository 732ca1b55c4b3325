"""Output locations checked before any work, and outputs staged so a failed run leaves none."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.outputs import prepare_dir, prepare_file, remove_created, staged_dir


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too): a file's bytes, None for a directory."""
    return {
        str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("afile", "--out {tmp}/afile: is a file, not a directory"),
        ("afile/sub", "--out {tmp}/afile/sub: cannot write there: Not a directory"),
        ("a" * 300, "cannot write there: File name too long"),
    ],
)
def test_an_unusable_directory_is_one_error_naming_the_path(
    tmp_path: Path, given: str, message: str
) -> None:
    (tmp_path / "afile").write_text("mine")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError) as err:
        prepare_dir(tmp_path / given, "--out")
    assert message.format(tmp=tmp_path) in str(err.value)
    assert _tree(tmp_path) == before


def test_missing_directories_are_created_and_removed_again_while_empty(tmp_path: Path) -> None:
    created = prepare_dir(tmp_path / "a" / "b" / "c", "--out")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert list((tmp_path / "a" / "b" / "c").iterdir()) == []  # the probe file is gone
    (tmp_path / "a" / "kept.txt").write_text("written since")
    remove_created(created)
    assert _tree(tmp_path) == {"a": None, "a/kept.txt": b"written since"}
    assert prepare_dir(tmp_path / "a", "--out") == []  # there already: never removed


def test_a_plot_path_is_checked_and_an_existing_file_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ConfigError, match=r"--plot .*afile/x\.png: .*afile is a file"):
        prepare_file(tmp_path / "afile" / "x.png", "--plot")
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        prepare_file(tmp_path, "--plot")
    assert prepare_file(tmp_path / "afile", "--plot") == []
    assert (tmp_path / "afile").read_text() == "mine"
    assert prepare_file(tmp_path / "new" / "x.png", "--plot") == [tmp_path / "new"]
    assert not (tmp_path / "new" / "x.png").exists()


def test_staged_outputs_move_into_place_and_keep_what_the_run_does_not_write(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    (out / "A").mkdir(parents=True)
    (out / "A" / "report.json").write_text("old")
    (out / "notes.txt").write_text("the user's")
    with staged_dir(out, "--out") as work:
        assert work.parent == out
        (work / "A").mkdir()
        (work / "A" / "report.json").write_text("new")
        (work / "B").mkdir()
        (work / "B" / "report.json").write_text("b")
        (work / "comparison.png").write_bytes(b"png")
        assert not (out / "B").exists()  # nothing in place before the end
    assert _tree(out) == {
        "A": None,
        "A/report.json": b"new",
        "B": None,
        "B/report.json": b"b",
        "comparison.png": b"png",
        "notes.txt": b"the user's",
    }


def _run(out: Path, files: dict[str, str], fail: bool, stopped: list[bool] | None = None) -> None:
    """A run writing ``files`` into its staged ``out``, then failing when ``fail``."""
    stop = None if stopped is None else (lambda: stopped.append(True))
    with staged_dir(out, "--out", before_discard=stop) as work:
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)
        if fail:
            raise RuntimeError("the second policy failed")


def test_a_failed_run_leaves_nothing_and_stops_the_writer_first(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    before = _tree(tmp_path)
    stopped: list[bool] = []
    with pytest.raises(RuntimeError, match="second policy"):
        _run(out, {"report.json": "half", "A/report.json": "half"}, True, stopped)
    assert stopped == [True]
    assert _tree(tmp_path) == before
    # a directory the failed run created is removed with its parents
    with pytest.raises(RuntimeError):
        _run(tmp_path / "x" / "y", {"report.json": "half"}, True)
    assert _tree(tmp_path) == before


def test_a_file_where_the_run_writes_a_directory_moves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "A").write_text("a file named like a policy")
    before = _tree(tmp_path)
    with pytest.raises(ConfigError, match=r"A is a file; the run writes one there"):
        _run(out, {"A/report.json": "new", "z.csv": "new"}, False)
    assert _tree(tmp_path) == before
