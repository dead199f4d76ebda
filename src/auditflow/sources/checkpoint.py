"""The agent's checkpoints: for each followed path, the stream (file identity) being read and the
offset up to which the API has accepted every line. Written atomically (temporary file, fsync,
rename, fsync of the directory) so a crash leaves the old or the new file, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from auditflow.errors import ConfigError
from auditflow.sources.files import FileIdentity

VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Every line of `identity` before byte `offset` was accepted by the API."""

    identity: FileIdentity
    offset: int


class CheckpointFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Checkpoint]:
        """The checkpoints by followed path; none when the file does not exist yet.

        Raises ConfigError naming the file when it is not a checkpoint file: starting over silently
        would re-send everything, and starting at the end would skip lines.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read checkpoints: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return {
                path: Checkpoint(FileIdentity(**entry["identity"]), int(entry["offset"]))
                for path, entry in data["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{self.path}: not a checkpoint file ({exc}); move it away to start over "
                "(every line is then sent again, and de-duplicated by event id)"
            ) from None

    def save(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        payload = {
            "version": VERSION,
            "files": {
                path: {"identity": asdict(cp.identity), "offset": cp.offset} for path, cp in sorted(checkpoints.items())
            },
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(payload, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
