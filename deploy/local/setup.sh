#!/usr/bin/env bash
# Idempotent setup of everything segflow needs on a Debian 12 machine:
# apt packages (Java 17, Maven, redis-server, kcat; Chromium and poppler-utils for `segflow brief
# --pdf` and the dashboard's browser tests), a virtualenv with segflow and its dev tools (plotly for
# the dashboard's charts, playwright to drive Chromium in tests/e2e), and the Kafka jars from Maven
# Central (fetched by `segflow stack up` on first start).
set -euo pipefail
cd "$(dirname "$0")/../.."

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
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian starts a system redis-server on 6379 after install; segflow runs its own on 16379.

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "segflow needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.segflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] pip install -e .[dev] (with plotly and playwright; Playwright's browser download is not used)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/segflow --help >/dev/null && echo 'segflow CLI ok')"
