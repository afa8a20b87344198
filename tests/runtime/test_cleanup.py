"""`fastretro cleanup`: orphaned shared-memory segments are removed, others' are skipped."""

from __future__ import annotations

import os

from fastretro.runtime import shm
from fastretro.tools import cli

DEAD = [f"{shm.PREFIX}999999999_{i:08x}" for i in range(3)]


def fake_dev_shm(monkeypatch, forbidden: str) -> set[str]:
    """Three orphaned segments in a pretend /dev/shm; unlinking ``forbidden`` is not allowed."""
    present = set(DEAD)
    unlink = os.unlink

    def fake_unlink(path, *args, **kwargs):
        name = os.path.basename(path)
        if not path.startswith("/dev/shm/") or name not in DEAD:
            return unlink(path, *args, **kwargs)
        if name == forbidden:
            raise PermissionError(1, "Operation not permitted", path)
        present.discard(name)

    monkeypatch.setattr(shm, "list_segments", lambda: sorted(present))
    monkeypatch.setattr(shm, "_owner_alive", lambda name: False)
    monkeypatch.setattr(shm.os, "unlink", fake_unlink)
    return present


def test_a_segment_that_may_not_be_removed_is_skipped_and_the_rest_are_removed(monkeypatch):
    present = fake_dev_shm(monkeypatch, forbidden=DEAD[0])
    skipped: list[str] = []
    assert shm.cleanup_orphans(skipped) == DEAD[1:]
    assert skipped == [DEAD[0]]
    assert present == {DEAD[0]}


def test_cleanup_without_a_skipped_list_still_goes_on(monkeypatch):
    present = fake_dev_shm(monkeypatch, forbidden=DEAD[1])
    assert shm.cleanup_orphans() == [DEAD[0], DEAD[2]]
    assert present == {DEAD[1]}


def test_the_cleanup_command_says_which_segment_it_skipped(monkeypatch, capsys):
    fake_dev_shm(monkeypatch, forbidden=DEAD[1])
    assert cli.main(["cleanup"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"removed /dev/shm/{DEAD[0]}",
        f"removed /dev/shm/{DEAD[2]}",
        f"skipped /dev/shm/{DEAD[1]}: permission denied (another user's segment?)",
        "2 orphaned segment(s) removed, 1 skipped; 0 in use.",
    ]
