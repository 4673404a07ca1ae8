"""Scratch folders for builds that are renamed into place, which a killed process cannot leave behind for good.

A build (a model cache entry, a demo voice) writes into a hidden scratch folder beside its target and renames
it into place when whole. A process killed midway (SIGKILL, the OOM killer, the exit at SIGTERM during start-up)
never reaches its cleanup, so its folder stays: `remove_abandoned` at the next start removes it. While its
builder lives, a scratch folder is locked (`flock` on the folder itself; the kernel drops the lock when the
process dies, however it dies), so a process sharing the cache never removes a build still in progress.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("gsv.scratch")


@contextmanager
def scratch_folder(root: Path, prefix: str) -> Iterator[Path]:
    """A new folder `root/.<prefix>-XXXXXXXX`, locked while the block runs and removed after it unless renamed away."""
    while True:
        path = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=root))
        handle = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        _lock(handle, blocking=True)
        if _is_same_folder(handle, path):
            break
        os.close(handle)  # a sweep removed it between its creation and our lock: make another
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(handle)


def remove_abandoned(root: Path) -> list[str]:
    """Remove every hidden folder under `root` that no living process holds locked; return their names.

    Only hidden folders are scratch: what is renamed into place never starts with a dot.
    """
    removed = []
    for folder in sorted(root.glob(".*")) if root.is_dir() else []:
        try:
            handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # not a folder, or gone already
            continue
        try:
            if not _lock(handle, blocking=False):
                continue  # a build in progress, in this process or another
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        finally:
            os.close(handle)
    if removed:
        logger.info("removed %d scratch folder(s) of interrupted builds in %s: %s", len(removed), root, ", ".join(removed))
    return removed


def _lock(handle: int, blocking: bool) -> bool:
    """Whether the exclusive lock was taken; a filesystem without locks counts as taken for a builder, not for a sweep."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # no locks on this filesystem: build unprotected, and never sweep what might be in progress
        return blocking
    return True


def _is_same_folder(handle: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except OSError:
        return False
