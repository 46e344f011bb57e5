#!/usr/bin/env bash
# docproc on one machine.
#   ./run.sh              install what is missing, then run the whole local stack
#   ./run.sh test         install what is missing, then run every test (the service's, then the CDK app's)
#   ./run.sh test ARGS    the service's tests only, with pytest ARGS (e.g. tests/unit -x, or -m "not stack": no servers)
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 PIP_DISABLE_PIP_VERSION_CHECK=1

PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed" >&2; exit 1; }

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_packages() {
  local missing=()
  command -v pdftoppm >/dev/null || missing+=(poppler-utils)
  command -v tesseract >/dev/null || missing+=(tesseract-ocr)
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" -ne 0 ]; then
    echo "warning: ${missing[*]} missing and not root: OCR of scanned pages will fail" >&2
    return
  fi
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

quiet_pip() {  # pip, minus the warnings about this machine's unused local indexes
  "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

venv() {  # venv <dir> <requirements files...>: create, and (re)install a file when its pins change
  local dir=$1; shift
  [ -x "$dir/bin/python" ] || { "$PY" -m venv "$dir" && quiet_pip "$dir/bin/pip" install -q --upgrade pip; }
  local req stamp
  for req in "$@"; do
    stamp="$dir/.installed-$(basename "$req")"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum < "$req")" ] && continue
    log "installing $req into $dir"
    # the pins are a complete closure: --no-deps keeps the resolver from adding anything
    quiet_pip "$dir/bin/pip" install -q --no-deps -r "$req"
    sha256sum < "$req" > "$stamp"
  done
}

console_script() {  # .venv/bin/docproc (pyproject.toml [project.scripts]), editable: it runs this checkout's code
  local stamp=.venv/.installed-docproc want
  want="$(sha256sum < pyproject.toml) $PWD"
  [ -x .venv/bin/docproc ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return
  log "installing the docproc command into .venv"
  quiet_pip .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$stamp"
}

install() {
  apt_packages
  venv .venv requirements.txt "$@"
  console_script
  venv .venv-secantus requirements-secantus.txt
}

case "${1:-serve}" in
  serve)
    install
    exec .venv/bin/python -m devstack serve
    ;;
  test)
    shift
    # the unstructured extra too, so its offline parsing is proven in CI
    install requirements-dev.txt requirements-unstructured.txt
    if [ $# -gt 0 ]; then  # a chosen subset: the service's tests only
      exec .venv/bin/python -m pytest "$@"
    fi
    .venv/bin/python -m pytest
    # the CDK app has its own toolchain (jsii's pins clash with the service's)
    infra_cdk/setup.sh
    exec infra_cdk/.venv/bin/python -m pytest -q -c infra_cdk/pytest.ini infra_cdk/tests
    ;;
  *)
    echo "usage: ./run.sh [serve | test [pytest args]]" >&2
    exit 2
    ;;
esac
