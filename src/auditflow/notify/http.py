"""What the notification senders need of the HTTP client process-wide.

httpcore (under httpx) runs `import sniffio` on every request to tell asyncio from trio. anyio no
longer depends on sniffio, so where it is not installed that import fails each time, and a failed
import searches every `sys.path` entry: measured here, about half of the CPU of a webhook request.
Recording the absence once makes the later imports fail at once, and httpcore then assumes asyncio,
which is what AuditFlow runs on."""

from __future__ import annotations

import importlib.util
import sys


def skip_failing_sniffio_import() -> None:
    """Make `import sniffio` fail fast when sniffio is not installed (a no-op when it is)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


__all__ = ["skip_failing_sniffio_import"]
