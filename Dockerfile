# coopbot container image. The base image is a build argument so the image can be built from a
# locally made base without a registry (see docs and .ci): docker build --build-arg BASE=... .
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY coopbot coopbot
COPY commands commands
RUN python3 -m venv /opt/coopbot \
 && /opt/coopbot/bin/pip install --no-cache-dir .

FROM ${BASE}
# The docker CLI runs `docker stack deploy` (the maintained compose implementation).
RUN apt-get update && apt-get install -y --no-install-recommends docker.io git openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data --create-home coopbot
COPY --from=build /opt/coopbot /opt/coopbot
# One volume for all state: SQLite, Matrix crypto store, recipe cache.
VOLUME /data
WORKDIR /data
# Reaching the local engine needs the Docker socket (mounted, and the user in its group);
# servers reached over SSH need nothing more than the key and known_hosts files.
USER coopbot
ENTRYPOINT ["/opt/coopbot/bin/coopbot"]
CMD ["run", "-c", "/data/config.yaml"]
