"""Atomic writes: a temporary file never outlives its write, even when interrupted."""

from __future__ import annotations

import os

import pytest

from faceprior import paths
from faceprior.paths import atomic_write, move_into_place, remove_unfinished_temporaries, temporary_path


def test_a_file_moved_into_place_without_replacing_leaves_no_second_name(tmp_path):
    temporary = temporary_path(tmp_path / "clip.mp4")
    temporary.write_bytes(b"video")
    move_into_place(temporary, tmp_path / "clip.mp4", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"] and (tmp_path / "clip.mp4").stat().st_nlink == 1
    again = temporary_path(tmp_path / "clip.mp4")
    again.write_bytes(b"other")
    with pytest.raises(FileExistsError):
        move_into_place(again, tmp_path / "clip.mp4", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"] and (tmp_path / "clip.mp4").read_bytes() == b"video"
    assert remove_unfinished_temporaries() == []


def test_an_interrupt_right_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(fd, mode):  # Ctrl-C lands after os.open returned, before the file object exists
        os.close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(paths.os, "fdopen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "a.png"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_the_cli_removes_temporaries_a_writer_had_no_chance_to_remove(tmp_path):
    finished = temporary_path(tmp_path / "done.mp4")
    finished.write_bytes(b"complete")
    move_into_place(finished, tmp_path / "done.mp4", overwrite=True)
    left = temporary_path(tmp_path / "half.mp4")  # a writer interrupted before its cleanup ran
    left.write_bytes(b"half")
    named_only = temporary_path(tmp_path / "never.mp4")  # interrupted before the file was created
    assert remove_unfinished_temporaries() == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["done.mp4"] and not named_only.exists()
    assert remove_unfinished_temporaries() == []
