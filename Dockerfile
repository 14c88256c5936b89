# The manager's image for users with a registry: the same steps as the offline builder
# (`flow-manager build-image --manager`, flow_manager/manager_image.py) from the official Python base.
# Same user, paths, environment, entry point, health check and labels; tests/unit/test_manager_image.py
# checks that the block between the RUNTIME markers is the builder's own text. CI builds the offline
# image only (no registry is reachable there, so python:3.11-slim-bookworm cannot be pulled).
#
#   docker build -t flow-manager:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY controller controller
COPY store store
COPY flow_manager flow_manager
COPY flow_runtime flow_runtime
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip install --no-cache-dir --no-compile --target /site /wheels/flow_manager-*.whl \
 && rm -rf /site/bin

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
RUN groupadd --system --gid 10001 flow-manager \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/flow-manager --no-create-home \
      --shell /usr/sbin/nologin flow-manager \
 && mkdir -p /var/lib/flow-manager /run/flow-manager/sockets && chown 10001:10001 /var/lib/flow-manager /run/flow-manager/sockets
COPY --from=wheel /site /opt/flow-manager/site/
# RUNTIME begin
ENV PYTHONPATH=/opt/flow-manager/site PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    FLOW_MANAGER_HOST=0.0.0.0 FLOW_MANAGER_PORT=8000 \
    FLOW_MANAGER_STATE_DIR=/var/lib/flow-manager FLOW_MANAGER_SOCKET_DIR=/run/flow-manager/sockets \
    FLOW_MANAGER_BUILD_IMAGE=false DOCKER_HOST=unix:///var/run/docker.sock
USER 10001:10001
WORKDIR /var/lib/flow-manager
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-m", "flow_manager", "healthcheck"]
ENTRYPOINT ["python3", "-m", "flow_manager"]
CMD ["serve"]
# RUNTIME end
LABEL org.opencontainers.image.title="flow-manager" \
      org.opencontainers.image.version="${VERSION}"
