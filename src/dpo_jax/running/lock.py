"""One job per output folder: an exclusive lock (``filelock``) on ``OUT/.dpo-jax.lock``.

A second process that tries to write into the same folder is refused at once with
a message naming the process that holds it (its pid, host, command and start
time, from ``OUT/.dpo-jax.lock.json``). The lock is released when the job ends,
however it ends (the OS drops it when the process dies), and both files are
deleted then: a finished or refused job leaves its folder as it found it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import socket
import sys
from typing import Iterator, Optional

LOCK_FILE = ".dpo-jax.lock"
INFO_FILE = ".dpo-jax.lock.json"


class FolderInUse(ValueError):
    """The output folder is locked by another process (named in the message): the
    folder given (``--out``) cannot be used now."""


def holder(out: pathlib.Path) -> str:
    """Who holds ``out``'s lock, as the info file says."""
    try:
        info = json.loads((out / INFO_FILE).read_text())
        return (f"process {info.get('pid')} on {info.get('host')} "
                f"({info.get('command')}, since {info.get('started')})")
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def folder_lock(out: str | pathlib.Path, command: Optional[str] = None) -> Iterator[None]:
    """Hold ``out``'s lock for the block; ``FolderInUse`` if another process holds
    it."""
    from filelock import FileLock, Timeout

    out = pathlib.Path(out)
    lock = FileLock(str(out / LOCK_FILE))
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        raise FolderInUse(f"output folder {str(out)!r} is in use by {holder(out)}: wait "
                          f"for that job to end, or use another folder") from None
    except OSError as err:  # read-only or immutable (root's permission checks pass)
        raise ValueError(f"output folder {str(out)!r} cannot be written "
                         f"({err.strerror or type(err).__name__}): choose another "
                         f"folder") from None
    try:
        (out / INFO_FILE).write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "command": command or " ".join(sys.argv),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}))
        yield
    finally:
        for name in (INFO_FILE, LOCK_FILE):  # still ours: the lock is held until here
            try:
                (out / name).unlink()
            except OSError:
                pass
        lock.release()
