# blocktrust-exporter: the exporter (and the API simulator used by the compose demo profile).
# No secret is baked in: credentials, webhook URLs and DATABASE_URL come from the environment
# (or X_FILE files) at run time. Build: docker build -t blocktrust-exporter .
#
# Reproducible: the base image is pinned by tag and digest (a multi-platform index; refresh both
# together with `docker buildx imagetools inspect python:3.11-slim-bookworm`), and the dependencies
# come from requirements.lock (exact versions and sha256 hashes, `make lock` regenerates it) in a
# layer of their own, before the code: a code change rebuilds only the last layers.
FROM python:3.11-slim-bookworm@sha256:b18992999dbe963a45a8a4da40ac2b1975be1a776d939d098c647482bcad5cba

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin blocktrust \
    && mkdir -p /data /etc/blocktrust-exporter \
    && chown blocktrust:blocktrust /data

# Dependencies first, from the lock only (every wheel checked against its hash).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock

# Then the code: the package alone, its dependencies are already there.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-deps --no-build-isolation . && rm -rf /src
COPY config.yaml /etc/blocktrust-exporter/config.yaml

# The embedded SQLite store (when DATABASE_URL is unset) lives in /data: mount a volume there.
WORKDIR /data
USER 10001:10001
EXPOSE 9108

# /healthz answers 200 while the process serves and no scheduled job is stalled; /readyz would also need the store.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["blocktrust-exporter"]
CMD ["run", "--config", "/etc/blocktrust-exporter/config.yaml"]
