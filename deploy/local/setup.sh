#!/usr/bin/env bash
# Idempotent setup of everything segflow needs on a Debian 12 machine:
# apt packages (Java 17, Maven, redis-server, kcat, prometheus; Chromium and poppler-utils for
# `segflow brief --pdf` and the dashboard's browser tests), a virtualenv with segflow and its dev
# tools (plotly for the dashboard's charts, playwright to drive Chromium in tests/e2e), and the
# Kafka jars from Maven Central (fetched by `segflow stack up` on first start).
# Quiet: apt's and pip's output goes to <stack dir>/setup.log; on a failure its path and its
# last lines are printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

stack_dir="${SEGFLOW_STACK_DIR:-.stack}"
mkdir -p "$stack_dir"
log="$(cd "$stack_dir" && pwd)/setup.log"
: >"$log"

# quiet WHAT COMMAND...: run COMMAND with its output in the log; on failure say where to look.
quiet() {
  local what=$1
  shift
  echo "+ $*" >>"$log"
  if ! "$@" >>"$log" 2>&1; then
    echo "[setup] $what failed; the last lines of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {  # apt_install [--no-install-recommends] PACKAGE...
  if [ "${apt_updated:-0}" = 0 ]; then
    quiet "apt-get update" $SUDO apt-get update -q
    apt_updated=1
  fi
  quiet "apt-get install $*" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

need_apt=()
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v kcat >/dev/null || need_apt+=(kcat)
command -v curl >/dev/null || need_apt+=(curl)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v pdftoppm >/dev/null || need_apt+=(poppler-utils)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
  echo "[setup] apt-get install ${need_apt[*]}"
  apt_install "${need_apt[@]}"
fi
# Debian starts a system redis-server on 6379 after install; segflow runs its own on 16379.
# Prometheus (and promtool) for `segflow stack up --prometheus`, the monitoring tests and the
# demo; without its recommends (node exporter and friends). Where systemd runs, Debian starts a
# system one on 9090; segflow runs its own on 19090.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "[setup] apt-get install prometheus"
  apt_install --no-install-recommends prometheus
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "segflow needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  quiet "python3 -m venv .venv" python3 -m venv .venv
fi
stamp=.venv/.segflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[dev] (with plotly and playwright; Playwright's browser download is not used)"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
  quiet "pip install --upgrade pip" .venv/bin/python -m pip install --upgrade pip
  quiet "pip install -e .[dev]" .venv/bin/python -m pip install -e '.[dev]'
  touch "$stamp"
fi
if ! .venv/bin/segflow --help >/dev/null 2>>"$log"; then
  echo "[setup] the segflow CLI does not start; see $log" >&2
  exit 1
fi
echo "[setup] ready (log: $log)"
