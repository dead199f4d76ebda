# One image for every AuditFlow service: `auditflow serve generator|analysis|notification|dashboard`,
# `auditflow migrate`, or the embedded `auditflow run` (the default command).
#
#   docker build -t auditflow:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# BASE_IMAGE swaps the base for a compatible one (Debian bookworm with Python 3.11 as `python`); the tests build
# on a local stand-in (scripts/container-test). A build that must reach the package index through a TLS proxy
# or a private index passes them as build secrets, which never land in a layer:
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt   (CA bundle pip verifies the index with)
#   --secret id=pipconf,src=pip.conf                         (pip configuration: index-url, extra-index-url)

# Its default is written where the stages name their base (`${BASE_IMAGE:-...}`), so linters see the pinned tag.
ARG BASE_IMAGE

# --- builder: build the wheel and install it with its pinned dependencies into a venv ---------------
FROM ${BASE_IMAGE:-python:3.11-slim-bookworm} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Copy only what the build needs so that unrelated edits keep the layer cache.
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src

# All dependencies ship binary wheels (uvloop, httptools, psycopg-binary, argon2), so no compiler is needed.
RUN --mount=type=secret,id=ca --mount=type=secret,id=pipconf \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && if [ -f /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt ".[all]" \
 && python -m venv /opt/auditflow \
 && /opt/auditflow/bin/pip install --no-cache-dir --no-index /wheels/*.whl \
 && /opt/auditflow/bin/pip uninstall --yes pip \
 && /opt/auditflow/bin/auditflow --help >/dev/null

# --- runtime: the venv only; no pip, no compiler, no shell tools beyond the base image ------------------
FROM ${BASE_IMAGE:-python:3.11-slim-bookworm} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="auditflow" \
      org.opencontainers.image.description="Security-audit detection pipeline: ingest audit events, detect with YAML rules, triage alerts." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://auditflow.invalid/source" \
      org.opencontainers.image.documentation="https://auditflow.invalid/docs" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed numeric UID/GID so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
RUN groupadd --system --gid 10001 auditflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/auditflow --no-create-home \
      --shell /usr/sbin/nologin auditflow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/auditflow

COPY --from=builder /opt/auditflow /opt/auditflow

# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in Kubernetes.
# PYTHONUNBUFFERED: JSON log lines reach `docker logs`/`kubectl logs` at once.
ENV PATH=/opt/auditflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUDITFLOW_DATA_DIR=/var/lib/auditflow

USER 10001:10001
WORKDIR /var/lib/auditflow
VOLUME ["/var/lib/auditflow"]
EXPOSE 5000 5001 8000 8080

# curl is not in the image; the standard library is. The port is the service's own (AUDITFLOW_PORT),
# 8080 for `auditflow run`; compose sets a per-service check, Kubernetes uses its own probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AUDITFLOW_PORT', '8080'), timeout=4)"]

# Exec form: auditflow is PID 1 and receives SIGTERM itself, drains, and exits 0 (no shell in between).
ENTRYPOINT ["auditflow"]
CMD ["run", "--host", "0.0.0.0"]
