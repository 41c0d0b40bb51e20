"""Undo for a session folder: every change to a file under the folder goes through a journal entry that
keeps what the change overwrote, so the entry can be reverted exactly.

An entry is a folder ``undo/<serial>/``: the files the change replaced, moved there under their relative
paths, and ``created.txt``, the files the change made new. Moving a file is a rename on the same disk, so
keeping what a run overwrote costs no copy, and a crash leaves the entry as complete as the change was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

UNDO_FOLDER = "undo"
CREATED_LIST = "created.txt"


class Journal:
    """The undo entries of one session folder, oldest first; at most ``depth`` are kept."""

    def __init__(self, root: Path, depth: int = 10) -> None:
        self.root = Path(root)
        self.depth = depth
        self.folder = self.root / UNDO_FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[Path]:
        return sorted((p for p in self.folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))

    def begin(self) -> Entry:
        entries = self.entries()
        serial = int(entries[-1].name) + 1 if entries else 0
        for old in entries[: max(0, len(entries) + 1 - self.depth)]:
            shutil.rmtree(old)
        return Entry(self.root, self.folder / f"{serial:06d}")

    def undo(self) -> list[str] | None:
        """Revert the newest entry; the relative paths it restored or removed, or None when there is none."""
        entries = self.entries()
        if not entries:
            return None
        return Entry(self.root, entries[-1]).revert()


class Entry:
    """One undoable change. ``write(relative, writer)`` replaces a file, keeping the old one first."""

    def __init__(self, root: Path, folder: Path) -> None:
        self.root = root
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._touched: set[str] = set(self._created())
        self._touched.update(str(p.relative_to(self.folder)) for p in self._kept())

    def _created(self) -> list[str]:
        path = self.folder / CREATED_LIST
        return path.read_text().splitlines() if path.is_file() else []

    def _kept(self) -> list[Path]:
        return [p for p in self.folder.rglob("*") if p.is_file() and p.name != CREATED_LIST]

    def keep(self, relative: str) -> None:
        """Before ``relative`` changes: move the current file into the entry, or note that it is new."""
        if relative in self._touched:
            return
        self._touched.add(relative)
        target = self.root / relative
        if target.exists():
            saved = self.folder / relative
            saved.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, saved)
        else:
            with open(self.folder / CREATED_LIST, "a") as handle:
                handle.write(relative + "\n")

    def write(self, relative: str, writer: Callable[[Path], None]) -> None:
        """Keep the old ``relative``, then ``writer(path)`` writes the new one (atomically, by the writers)."""
        self.keep(relative)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)

    def remove(self, relative: str) -> None:
        self.keep(relative)

    @property
    def empty(self) -> bool:
        return not self._touched

    def discard_if_empty(self) -> None:
        if self.empty and self.folder.exists():
            shutil.rmtree(self.folder)

    def revert(self) -> list[str]:
        changed = []
        for relative in self._created():
            (self.root / relative).unlink(missing_ok=True)
            changed.append(relative)
        for saved in self._kept():
            relative = str(saved.relative_to(self.folder))
            target = self.root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(saved, target)
            changed.append(relative)
        shutil.rmtree(self.folder)
        return changed
