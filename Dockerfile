# record-deleter worker image: the installed wheel on a slim Python, as a non-root user.
#   docker build -t record-deleter .
#   docker run --env-file worker.env -p 9464:9464 record-deleter     (`record-deleter worker`)
# The pip steps live in docker/install-wheel.sh, which `make test` also runs in a fresh virtual
# environment (scripts/check_wheel.sh): the suite's machines have no Docker engine.
FROM python:3.13-slim AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
COPY docker/install-wheel.sh /usr/local/bin/install-wheel
RUN install-wheel build /src /wheels

FROM python:3.13-slim
ENV PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
COPY docker/install-wheel.sh /usr/local/bin/install-wheel
RUN install-wheel install /wheels && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin record-deleter
USER 10001
# the status endpoint on all interfaces of the container (/metrics, /healthz, /readyz); JSON logs
ENV WORKER_METRICS_PORT=9464 WORKER_METRICS_ADDRESS=0.0.0.0 WORKER_LOG_FORMAT=json PYTHONUNBUFFERED=1
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
ENTRYPOINT ["record-deleter"]
CMD ["worker"]
