"""Issue 16 defect 9: temporary files of deliveries a crash cut short are removed at the next start.

The crash is real: a child process writes through the file destination and is killed (SIGKILL) by
its own fsync, between writing the temporary file and renaming it, as a kill -9 mid-write would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge import ConfigError, DestinationContext
from bridge.plugins.file import STALE_TEMP_SECONDS, TEMP_NAME, FolderDestination

_KILLED_MID_WRITE = """
import os, signal, sys
from bridge import Delivery, DestinationContext
from bridge.plugins.file import FolderDestination

os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # die after the data, before the rename
n = int(sys.argv[2])
destination = FolderDestination(DestinationContext(url="file://" + sys.argv[1], name="out", options={},
                                                   config_dir="."))
destination.send(Delivery(outbox_id=n, message_id=n, destination="out", payload=b"MSH|partial",
                          media_type="text/plain", file_extension="hl7", attempt=1))
"""


def crash_during_write(folder: Path, n: int) -> None:
    child = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(folder), str(n)], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()


def open_destination(folder: Path, **options) -> FolderDestination:
    return FolderDestination(DestinationContext(url=f"file://{folder}", name="out", options=options,
                                                config_dir="."))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_start_removes_the_temporary_files_of_crashed_writes_and_nothing_else(tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    for n in range(1, 4):
        crash_during_write(folder, n)
    leftovers = sorted(p for p in folder.iterdir() if TEMP_NAME.match(p.name))
    assert len(leftovers) == 3 and not (folder / "1-1.hl7").exists()
    for path in leftovers:
        age(path, STALE_TEMP_SECONDS + 60)
    in_progress = folder / f".9-9.hl7.{os.getpid() + 1}.12345.tmp"  # another process writing right now
    in_progress.write_bytes(b"MSH|still being written")
    others = [folder / "notes.tmp", folder / ".hidden.tmp", folder / "2-2.hl7"]  # not this destination's temps
    for path in others:
        path.write_bytes(b"keep")
        age(path, STALE_TEMP_SECONDS + 60)

    open_destination(folder)

    assert sorted(p.name for p in folder.iterdir()) == sorted([in_progress.name] + [p.name for p in others])


def test_the_bound_is_an_option_and_a_bad_one_is_refused(tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    crash_during_write(folder, 1)
    [leftover] = list(folder.iterdir())
    age(leftover, 120)
    open_destination(folder)  # the default bound (an hour): too young to be a leftover
    assert leftover.exists()
    open_destination(folder, stale_temp_seconds=60)
    assert not leftover.exists()
    with pytest.raises(ConfigError, match="stale_temp_seconds must be a number of seconds, at least 1"):
        open_destination(folder, stale_temp_seconds="soon")


def test_a_failed_write_removes_its_temporary_file(tmp_path):
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "1-1.hl7").mkdir()  # the rename onto a folder fails
    from bridge import Delivery, TransientDeliveryError

    with pytest.raises(TransientDeliveryError):
        open_destination(folder).send(Delivery(outbox_id=1, message_id=1, destination="out", payload=b"MSH|x",
                                               media_type="text/plain", file_extension="hl7", attempt=1))
    assert [p.name for p in folder.iterdir()] == ["1-1.hl7"]


def test_a_missing_folder_is_not_an_error_at_start(tmp_path):
    open_destination(tmp_path / "not-yet")
    assert not (tmp_path / "not-yet").exists()
