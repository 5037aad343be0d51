#!/usr/bin/env bash
# Run ftpipe's nox sessions on any machine, fresh or not: `bash tools/nox.sh -s demo`.
#
# Obtains the interpreters (tools/find-pythons.sh builds a free-threaded 3.13 when
# none is found: a few minutes, once), installs a pinned nox into a cached venv, then
# runs `nox "$@"` from the repository root.  Later runs start in about a second.
#
# Environment: FTPIPE_CACHE (default ~/.cache/ftpipe); CI=1 turns a missing
# interpreter into an error instead of a skipped session.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FTPIPE_CACHE:-$HOME/.cache/ftpipe}"
NOX_VENV="$CACHE/nox-venv"
NOX_REQUIREMENT="nox==2026.10.20"

bin="$(bash "$ROOT/tools/find-pythons.sh" --require 3.13t | tail -n1)"
export PATH="$bin:$PATH"

if [[ "$("$NOX_VENV/bin/python" -m pip freeze 2>/dev/null | grep -i '^nox==' || true)" != "$NOX_REQUIREMENT" ]]; then
  host="$(command -v python3.11 || command -v python3 || true)"
  [[ -n "$host" ]] || { echo "tools/nox.sh: no python3 to install nox with" >&2; exit 1; }
  echo "tools/nox.sh: installing $NOX_REQUIREMENT into $NOX_VENV" >&2
  rm -rf "$NOX_VENV"
  "$host" -m venv "$NOX_VENV"
  "$NOX_VENV/bin/python" -m pip install --quiet "$NOX_REQUIREMENT" >&2
fi

cd "$ROOT"
exec "$NOX_VENV/bin/nox" "$@"
