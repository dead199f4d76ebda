"""Modes of what the services write: the data directory 0700, its files (secrets, the SQLite database)
0600, created so from the start and restricted when an earlier start or a copy left them looser."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("auditflow.filemodes")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path) -> None:
    """Create the data directory with mode 0700, or take group and other access away from an existing one:
    it holds the API token, the password hashes and the alerts."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _restrict(path, PRIVATE_DIR_MODE)
    _require_writable(path)


def _require_writable(path: Path) -> None:
    """Fail at start with the fix instead of a PermissionError on the first file written later: the usual
    cause is a tmpfs or volume mounted over the data directory that belongs to root."""
    if os.access(path, os.W_OK | os.X_OK):
        return
    info = path.stat()
    raise PermissionError(
        errno.EACCES,
        f"not writable by uid {os.geteuid()} (owner uid {info.st_uid}, gid {info.st_gid}, mode "
        f"{stat.S_IMODE(info.st_mode):04o}); give the directory to this user, e.g. mount the tmpfs with "
        f"`--tmpfs {path}:uid={os.geteuid()},gid={os.getegid()},mode=0700` (compose: `tmpfs: "
        f'["{path}:uid={os.geteuid()},gid={os.getegid()},mode=0700"]`), or set AUDITFLOW_DATA_DIR to a '
        "writable directory",
        str(path),
    )


def ensure_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists, and restrict an existing one to 0600. SQLite
    creates its -wal and -shm files with the mode of the database file, so this covers them too."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        _restrict(path, PRIVATE_FILE_MODE)


def _restrict(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        try:
            path.chmod(current & mode)
        except PermissionError:
            # Owned by someone else (a mounted volume): run on, but say that others can read it.
            log.warning("%s has mode %o and cannot be restricted to %o", path, current, mode)
