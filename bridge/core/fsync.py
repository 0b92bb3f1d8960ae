"""Flushing a file or a directory to disk by its path.

A rename or a newly created file is durable only once its directory is flushed too; the intake
journal (segments, positions) and the store's backups both need that, so they share this.
"""

from __future__ import annotations

import os


def fsync_path(path: str | os.PathLike[str]) -> None:
    """``fsync`` the file or directory at ``path`` (opened read-only, closed again)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
