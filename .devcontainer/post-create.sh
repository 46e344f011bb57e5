#!/usr/bin/env bash
# Runs once when the devcontainer is created (postCreateCommand): the OS packages the service needs and
# the virtualenv, installed the way ./run.sh installs it; ./run.sh and ./run.sh test then find it ready.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

sudo apt-get update -qq
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends poppler-utils tesseract-ocr

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# requirements.txt pins torch==2.13.0+cpu, which PyPI does not serve: PyTorch's CPU index first
.venv/bin/pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
# the pins are a complete closure: --no-deps installs exactly them
.venv/bin/pip install -q --no-deps -r requirements.txt -r requirements-dev.txt

echo "ready: ./run.sh (API on :8000, forwarded) and ./run.sh test"
