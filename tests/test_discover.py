"""Tests for scanner.audio.discover: what is found, what is skipped, and that odd trees never crash."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from scanner.audio.discover import DEFAULT_EXTENSIONS, discover
from scanner.errors import ConfigError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(files, root: Path) -> list[str]:
    return [f.path.relative_to(root).as_posix() for f in files]


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in ["a.wav", "b/c.FLAC", "b/d/e.mp3", "b/d/f.Ogg", "z.m4a", "notes.txt", "img.png",
                "b/d/deeper/g.opus", "b/readme.md"]:
        touch(root / rel, rel.encode())
    return root


def test_nested_folders_default_extensions_case_insensitive_sorted(tree: Path) -> None:
    files = discover([tree])
    assert names(files, tree) == ["a.wav", "b/c.FLAC", "b/d/deeper/g.opus", "b/d/e.mp3",
                                  "b/d/f.Ogg", "z.m4a"]
    assert [str(f.path) for f in files] == sorted(str(f.path) for f in files)
    first = files[0]
    assert first.path.is_absolute()
    st = os.stat(first.path)
    assert (first.size_bytes, first.mtime_ns) == (st.st_size, st.st_mtime_ns) == (5, st.st_mtime_ns)


def test_default_extensions_cover_common_formats() -> None:
    for ext in ("wav", "flac", "ogg", "opus", "mp3", "m4a", "aac", "aiff", "wma"):
        assert ext in DEFAULT_EXTENSIONS


def test_extensions_option_with_or_without_dot(tree: Path) -> None:
    assert names(discover([tree], extensions=["FLAC", ".mp3"]), tree) == ["b/c.FLAC", "b/d/e.mp3"]
    assert names(discover([tree], extensions=["txt"]), tree) == ["notes.txt"]
    with pytest.raises(ConfigError):
        discover([tree], extensions=[])


def test_include_and_exclude_match_relative_path_or_name(tree: Path) -> None:
    assert names(discover([tree], include=["b/d/*"]), tree) == [
        "b/d/deeper/g.opus", "b/d/e.mp3", "b/d/f.Ogg"]
    assert names(discover([tree], include=["*.mp3", "a.*"]), tree) == ["a.wav", "b/d/e.mp3"]
    assert names(discover([tree], exclude=["deeper"]), tree) == [
        "a.wav", "b/c.FLAC", "b/d/e.mp3", "b/d/f.Ogg", "z.m4a"]
    assert names(discover([tree], exclude=["b/*", "z.m4a"]), tree) == ["a.wav"]
    assert names(discover([tree], include=["*.wav", "*.mp3"], exclude=["e.*"]), tree) == ["a.wav"]


def test_hidden_files_and_folders_skipped_unless_asked(tree: Path) -> None:
    touch(tree / ".secret.wav")
    touch(tree / ".cache" / "x.wav")
    touch(tree / "b" / ".trash" / "y.wav")
    assert ".secret.wav" not in names(discover([tree]), tree)
    assert len(discover([tree])) == 6
    got = names(discover([tree], hidden=True), tree)
    assert {".secret.wav", ".cache/x.wav", "b/.trash/y.wav"} <= set(got)
    assert len(got) == 9


def test_explicit_file_taken_whatever_its_extension(tree: Path) -> None:
    files = discover([tree / "notes.txt", tree / "b" / "d" / "e.mp3"])
    assert names(files, tree) == ["b/d/e.mp3", "notes.txt"]


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover([tmp_path / "nope"])
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "gone", link)
    with pytest.raises(ConfigError, match="broken"):
        discover([link])


def test_overlapping_paths_list_each_file_once(tree: Path) -> None:
    files = discover([tree, tree / "b", tree / "a.wav", str(tree) + "/./b/d"])
    assert names(files, tree) == names(discover([tree]), tree)


def test_symlink_loop_terminates_even_when_following(tree: Path) -> None:
    os.symlink(tree, tree / "b" / "d" / "loop")  # a folder linked to an ancestor
    os.symlink("..", tree / "b" / "up")
    for follow in (False, True):
        files = discover([tree], follow_symlinks=follow)
        assert len(files) == 6
        assert len({f.path for f in files}) == 6


def test_symlinked_folder_followed_only_when_asked(tmp_path: Path, tree: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch(outside / "far.wav")
    os.symlink(outside, tree / "linked")
    assert "linked/far.wav" not in names(discover([tree]), tree)
    assert "linked/far.wav" in names(discover([tree], follow_symlinks=True), tree)


def test_file_symlink_outside_root_skipped_inside_root_deduplicated(tmp_path: Path,
                                                                    tree: Path) -> None:
    touch(tmp_path / "private" / "out.wav")
    os.symlink(tmp_path / "private" / "out.wav", tree / "sneaky.wav")
    os.symlink(tree / "b" / "d" / "e.mp3", tree / "alias.mp3")  # same file as one in the tree
    default = names(discover([tree]), tree)
    assert "sneaky.wav" not in default
    assert "alias.mp3" not in default and "b/d/e.mp3" in default
    assert "sneaky.wav" in names(discover([tree], follow_symlinks=True), tree)


def test_broken_symlink_warned_and_skipped(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.symlink(tree / "missing.wav", tree / "broken.wav")
    with caplog.at_level(logging.WARNING, logger="scanner.audio.discover"):
        files = discover([tree])
    assert len(files) == 6
    assert "broken symbolic link" in caplog.text


def test_unreadable_folder_logged_and_skipped(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # chmod does not stop root, so make scandir fail the way it does for a locked folder
    real_scandir = os.scandir
    locked = str(tree / "b" / "d")

    def scandir(path):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="scanner.audio.discover"):
        files = discover([tree])
    assert names(files, tree) == ["a.wav", "b/c.FLAC", "z.m4a"]
    assert "unreadable folder" in caplog.text and "Permission denied" in caplog.text


def test_pipes_are_skipped(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    os.mkfifo(tree / "pipe.wav")  # opening it to decode would block forever
    with caplog.at_level(logging.WARNING, logger="scanner.audio.discover"):
        assert len(discover([tree])) == 6
    assert "not a regular file" in caplog.text
    with pytest.raises(ConfigError, match="not a regular file"):
        discover([tree / "pipe.wav"])
