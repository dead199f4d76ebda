"""TLS options of the connections to RabbitMQ, Redis and PostgreSQL (CA bundle, client certificate,
verification), turned into what each client library takes: an `ssl.SSLContext` for aio-pika, `ssl_*`
keywords for redis-py, libpq parameters for psycopg."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True

    @property
    def configured(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None or not self.verify

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the system's CAs, or `ca_file` alone when given."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def redis_options(self) -> dict[str, Any]:
        """Keywords of `redis.asyncio.Redis.from_url` for a `rediss://` URL."""
        options: dict[str, Any] = {"ssl_cert_reqs": "required" if self.verify else "none"}
        if not self.verify:
            options["ssl_check_hostname"] = False
        if self.ca_file is not None:
            options["ssl_ca_certs"] = str(self.ca_file)
        if self.cert_file is not None:
            options["ssl_certfile"] = str(self.cert_file)
            options["ssl_keyfile"] = str(self.key_file) if self.key_file else None
        return options

    def libpq_params(self) -> dict[str, str]:
        """Connection parameters for psycopg: TLS required, and verified against `ca_file` unless disabled."""
        params = {"sslmode": "verify-full" if self.verify else "require"}
        if self.ca_file is not None:
            params["sslrootcert"] = str(self.ca_file)
        if self.cert_file is not None:
            params["sslcert"] = str(self.cert_file)
        if self.key_file is not None:
            params["sslkey"] = str(self.key_file)
        return params
