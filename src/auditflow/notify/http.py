"""The HTTP client of the notification senders (webhook and Slack).

One aiohttp session per dispatcher: its connections are kept alive and reused, any number of them
(the dispatcher's `concurrency` bounds the requests in flight), redirects are never followed, and
nothing is added to the sender's headers but Host and Content-Length. aiohttp parses responses in C
and its pool hands a connection over without scanning the others: measured against the same local
receiver, 0.2 to 0.4 ms of CPU per POST where httpx took 1.7 to 3 ms, which bounded a dispatcher to a few
hundred deliveries per CPU-second.

`skip_failing_sniffio_import` is for httpx loops (the notify bench's reference): httpcore runs `import
sniffio` on every request; where sniffio is not installed that import fails each time and searches every
`sys.path` entry. It records the absence once."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp

# Idle connections are closed after this long (httpx's client closed them after 30 s as well).
KEEP_ALIVE_S = 30.0
# What a failure message quotes of an answer's body.
ERROR_TEXT_CHARS = 200


class PostError(Exception):
    """The request got no answer: `kind` names the cause as the delivery's error reports it
    (`ConnectError` when no connection could be made)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    text: str  # the start of the body, for a failure's message

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308)


class HttpClient:
    """POSTs over kept-alive connections; the session opens at the first request (it needs the running
    event loop) and closes with `aclose`."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}  # by URL: its proxy from the environment, if any

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEP_ALIVE_S)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> Answer:
        """POST once, the whole exchange within `seconds` (TimeoutError); PostError when no answer came."""
        try:
            async with asyncio.timeout(seconds):
                async with self._open().post(
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    proxy=self._proxy(url),
                    timeout=aiohttp.ClientTimeout(total=seconds),
                ) as response:
                    content = await response.read()  # all of it: the connection is then reused
                    text = ""
                    if not 200 <= response.status < 300:
                        text = content[: ERROR_TEXT_CHARS * 4].decode(response.get_encoding(), "replace")
                    return Answer(response.status, response.headers, text[:ERROR_TEXT_CHARS])
        except aiohttp.ClientConnectorError as exc:
            raise PostError("ConnectError", str(exc)) from exc
        except aiohttp.ServerTimeoutError as exc:  # aiohttp's own timeout, a TimeoutError too
            raise TimeoutError from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise PostError(exc.__class__.__name__, str(exc)) from exc

    def _proxy(self, url: str) -> str | None:
        """HTTP(S)_PROXY and NO_PROXY, as httpx applied them: read once per URL. (aiohttp's own
        `trust_env` reads them, and ~/.netrc in a worker thread, on every request.)"""
        if url not in self._proxies:
            parts = urlsplit(url)
            proxies = urllib.request.getproxies_environment()
            bypass = parts.hostname is None or urllib.request.proxy_bypass(parts.hostname)
            self._proxies[url] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[url]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def skip_failing_sniffio_import() -> None:
    """Make `import sniffio` fail fast when sniffio is not installed (a no-op when it is)."""
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


__all__ = ["Answer", "HttpClient", "PostError", "skip_failing_sniffio_import"]
