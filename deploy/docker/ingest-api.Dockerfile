# ingest-api: the provider push API (what `make run` starts as rwasync-ingest-api).
# Build from the repository root: docker compose build (or docker build -f deploy/docker/ingest-api.Dockerfile .)
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/rwasync
COPY constraints.txt constraints.txt
COPY libs/schema libs/schema
COPY libs/platform libs/platform
COPY libs/feeds libs/feeds
COPY libs/store libs/store
COPY services/ingest-api services/ingest-api
RUN /opt/rwasync/bin/pip install --no-cache-dir -c constraints.txt ./libs/schema ./libs/platform ./libs/feeds ./libs/store ./services/ingest-api

FROM python:3.11.11-slim-bookworm
RUN useradd --system --user-group --uid 10001 --no-create-home --shell /usr/sbin/nologin rwasync
COPY --from=build /opt/rwasync /opt/rwasync
ENV PATH=/opt/rwasync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["rwasync-ingest-api"]
