# GPT-SoVITS speech server as a Hugging Face Docker Space (cpu-basic: 2 vCPU, 16 GB, port 7860, uid 1000).
#
# Build arguments:
#   DOWNLOAD_GENIE_DATA=1  fetch GenieData (about 391 MB) from the hub at build time, so a cold start never
#                          waits on the hub. 0 makes the build offline: no GenieData and no predefined voice
#                          (for builds that provide GenieData another way, and for offline checks with DEMO=1).
#   PREDEFINED_VOICE=mika  Genie's character installed at build time when models/ holds no voice, so a fresh
#                          Space speaks before its owner adds a voice. mika is the default because she is
#                          Japanese, whose G2P (pyopenjtalk) is the most complete offline path in Genie.
#                          One of mika, feibi, thirtyseven; empty for none.
#   HF_ENDPOINT            the hub to download from (a mirror, or a local stand-in in tests).
#
# BuildKit is needed (`RUN --mount=type=cache` below): it is the default builder of Docker Engine 23 and later
# and of Docker Desktop. With an older Docker, build with `DOCKER_BUILDKIT=1 docker build ...` (or
# `docker buildx build`); the legacy builder stops at the first `--mount`.

# ---- builder: a virtualenv with exactly the locked packages (requirements.lock, made by scripts/lock.sh: every
# package, transitive ones included, at one version with its sha256). jieba_fast ships only as a source archive,
# so this stage needs a C compiler; the final stage copies /opt/venv and leaves the compiler behind.
FROM python:3.11-slim AS builder
# Versions come from the base image's Debian release; pinning them breaks the build at every point release.
# The official image carries Python.h under /usr/local/include; a Debian Python needs python3-dev for it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && if ! python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then \
         apt-get install -y --no-install-recommends python3-dev; \
       fi \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-build.lock requirements.lock /tmp/
# --require-hashes: a file whose hash is not in the lock fails the build. --no-deps: nothing outside the lock.
# The locked setuptools goes in first and --no-build-isolation builds jieba_fast and Distance with it.
# The cache mount keeps downloads and the jieba_fast wheel between builds without putting them in any layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r /tmp/requirements-build.lock \
    && pip install --require-hashes --no-deps --no-build-isolation -r /tmp/requirements.lock

# ---- genie-data: GenieData, fetched by the server's own code straight to the path the image uses (so its
# messages name that path). Only the modules it needs are copied: a code change elsewhere does not fetch 391 MB again.
FROM builder AS genie-data
ARG DOWNLOAD_GENIE_DATA=1
ARG HF_ENDPOINT=https://huggingface.co
ENV HF_HOME=/tmp/hf-home \
    HF_HUB_DISABLE_TELEMETRY=1
WORKDIR /src
COPY engine/__init__.py engine/genie.py engine/
COPY engine/models/__init__.py engine/models/hub.py engine/models/genie_data.py engine/models/
# The import runs even when the download is skipped, so an offline build still proves this step can run.
# Files 644 and folders 755, whatever the umask: the final stage copies them root-owned, readable by uid 1000.
RUN python -c 'import engine.models.genie_data' \
    && mkdir -p /home/user/GenieData \
    && case "$DOWNLOAD_GENIE_DATA" in \
         1) python -m engine.models.genie_data /home/user/GenieData ;; \
         0) echo "DOWNLOAD_GENIE_DATA=0: the image has no GenieData; run it with DEMO=1 or give it GenieData at GENIE_DATA_DIR" ;; \
         *) echo "DOWNLOAD_GENIE_DATA must be 0 or 1, not '$DOWNLOAD_GENIE_DATA'" >&2; exit 1 ;; \
       esac \
    && rm -rf /tmp/hf-home \
    && chmod -R u=rwX,go=rX /home/user/GenieData

# ---- app: the server's code (compiled here: uid 1000 cannot write __pycache__) and models/ (plus the predefined
# voice), made read-only for everyone but root here, so the final stage copies them without a chmod layer that
# would duplicate the voices.
FROM builder AS app
ARG DOWNLOAD_GENIE_DATA=1
ARG PREDEFINED_VOICE=mika
ARG HF_ENDPOINT=https://huggingface.co
ENV HF_HOME=/tmp/hf-home \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app/code
COPY server.py settings.py ./
COPY api/ api/
COPY wavstream/ wavstream/
COPY playground/ playground/
COPY engine/ engine/
COPY models/ /app/models/
RUN if [ "$DOWNLOAD_GENIE_DATA" = 1 ] && [ -n "$PREDEFINED_VOICE" ] \
       && [ -z "$(find /app/models -mindepth 1 -maxdepth 1 -type d ! -name '.*' -print -quit)" ]; then \
         python -m engine.tools.predefined "$PREDEFINED_VOICE" --models /app/models; \
    fi \
    && rm -rf "$HF_HOME" \
    && python -m compileall -q /app/code \
    && chmod -R u=rwX,go=rX /app

# ---- the Space: no compiler, no apt lists, no pip cache; runs as uid 1000. Everything it runs (the venv, the
# code, models/, GenieData) belongs to root and is read-only for uid 1000, so a compromised server cannot
# rewrite its own code; its home is root's too (it could otherwise rename app/ away and put its own in place).
# The one writable path is ~/.cache: the demo voice (CACHE_DIR) and huggingface_hub's cache (HF_HOME).
FROM python:3.11-slim
RUN useradd --create-home --uid 1000 user \
    && chown -R root:root /home/user \
    && chmod 755 /home/user \
    && install -d -o user -g user -m 700 /home/user/.cache \
    && install -d -m 755 /home/user/app
USER 1000:1000
ENV HOME=/home/user \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/home/user/.cache \
    HF_HOME=/home/user/.cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GENIE_DATA_DIR=/home/user/GenieData \
    GENIE_DOWNLOAD=0 \
    MODELS_DIR=/home/user/app/models
# GENIE_DOWNLOAD=0: GenieData belongs in the image; a Space without it should stop at once and say so, not
# fetch 391 MB at every cold start. To allow that anyway, set GENIE_DOWNLOAD=1 and GENIE_DATA_DIR to a path
# under the writable cache, e.g. /home/user/.cache/GenieData, as Space variables.
WORKDIR /home/user/app
COPY --from=builder /opt/venv /opt/venv
COPY --from=genie-data /home/user/GenieData/ /home/user/GenieData/
# Code before models, so a change of code alone leaves the models layer as it was.
COPY --from=app /app/code/ ./
COPY --from=app /app/models/ models/
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '7860') + '/health', timeout=4)"]
# Exec form: python is PID 1 and gets SIGTERM itself, so uvicorn's graceful shutdown (30 s) finishes streams.
CMD ["python", "server.py"]
