# coopbot container image. Built without any container registry and without network access:
#
#     scripts/build-image            (makes the base, the wheels, then runs docker build)
#
# BASE is a build argument. It must be a Debian bookworm root file system that ALREADY holds what
# coopbot runs, because this build installs no system packages:
#   - python3 (3.11) and python3-venv   the interpreter and a venv for coopbot
#   - git                                recipe repos (GitPython runs the git binary)
#   - openssh-client                     ssh for servers reached over SSH
#   - the docker CLI (/usr/bin/docker)   `docker stack deploy` (taken from Debian's docker.io)
#   - ca-certificates                    HTTPS to the homeserver and to recipe repos
# scripts/build-image makes one with debootstrap from Debian's packages and `docker import`s it
# as coopbot-base:bookworm. Python packages come from build/wheelhouse/ in the build context (made
# on the host by `pip wheel`, Python 3.11 like bookworm's): deps/ holds the dependencies,
# coopbot/ the coopbot wheel, so a code change rebuilds only the last layers.
ARG BASE=coopbot-base:bookworm

# The dependencies' venv: rebuilt only when build/wheelhouse/deps changes; the wheels themselves
# stay in this stage.
FROM ${BASE} AS deps
COPY build/wheelhouse/deps /wheels/deps
RUN python3 -m venv /opt/coopbot \
 && /opt/coopbot/bin/pip install --quiet --no-cache-dir --no-index --find-links /wheels/deps \
        /wheels/deps/*.whl \
 && /opt/coopbot/bin/pip uninstall --quiet --yes setuptools

FROM ${BASE}
# Fail early, with a sentence, on a base that lacks a tool (see the list above).
RUN for tool in python3 git ssh docker; do \
      command -v "$tool" >/dev/null || { echo "base image $tool missing: see Dockerfile" >&2; exit 1; }; \
    done \
 && groupadd --system --gid 10001 coopbot \
 && useradd --system --uid 10001 --gid coopbot --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin coopbot \
 && mkdir -p /data /etc/coopbot \
 && chown coopbot:coopbot /data \
 && chmod 0750 /data
COPY --from=deps /opt/coopbot /opt/coopbot
# coopbot itself: a small layer of its own, so a new version ships a few hundred kB.
COPY build/wheelhouse/coopbot /tmp/wheels
RUN /opt/coopbot/bin/pip install --quiet --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && /opt/coopbot/bin/pip check \
 && /opt/coopbot/bin/coopbot --help >/dev/null \
 && /opt/coopbot/bin/python -c "import nio.crypto, vodozemac, prometheus_client"
# COOPBOT_CONFIG names the config file (`coopbot run` and `coopbot health` read it). Relative
# paths in it are taken from its folder: with the default, state/... lands in the volume.
ENV PATH=/opt/coopbot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    COOPBOT_CONFIG=/data/config.yaml \
    HOME=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# All state in one volume: SQLite database, Matrix crypto store and session, recipe cache.
VOLUME /data
WORKDIR /data
# Non-root. Servers reached over SSH need only their key and known_hosts files. Managing the
# swarm this container runs on needs the Docker socket mounted AND its group: `docker run
# --group-add $(stat -c %g /var/run/docker.sock)`, or in a stack `user: "10001:<that gid>"`
# (the recipe's DOCKER_GID). Whoever can use that socket is root on the node: see docs/security.md.
USER coopbot
# Asks the bot's own /healthz (the config's `health` listener); reports healthy with a note
# when that listener is disabled. start-period covers login and the first sync.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["coopbot", "health"]
ENTRYPOINT ["coopbot"]
CMD ["run"]
