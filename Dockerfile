# syntax=docker/dockerfile:1
# The control plane as a container: python -m actors.main on :50051, metrics on :9095, the
# operator API and dashboard on :8080 (reachable from outside only with ACP_ADMIN_TOKEN_FILE set).
# Build: docker build -t audio-control-plane . (BASE_IMAGE picks the slim Python base).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/acp
COPY pyproject.toml setup.cfg README.md comms.proto ./
COPY actors/ actors/
COPY rpc/ rpc/
COPY media/ media/
COPY admin/ admin/
COPY cluster/ cluster/
COPY simulator/ simulator/
RUN /opt/acp/bin/pip install . && /opt/acp/bin/python -m compileall -q /opt/acp

FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus0 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin acp \
    && install -d -o 10001 -g 10001 /var/lib/acp
COPY --from=build /opt/acp /opt/acp
ENV PATH=/opt/acp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ACP_HOST=[::] \
    ACP_PORT=50051 \
    ACP_METRICS_PORT=9095 \
    ACP_ADMIN_PORT=8080 \
    ACP_STATE_DB=/var/lib/acp/devices.sqlite3
WORKDIR /opt/acp
USER 10001:10001
VOLUME ["/var/lib/acp"]
EXPOSE 50051 9095 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 CMD ["python", "-m", "rpc.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "actors.main"]
