#!/usr/bin/env bash
# Find or provide the interpreters ftpipe is tested on, and expose them to nox.
#
# Prints one line: a directory to put first on PATH.  That directory holds
# python3.11, python3.12, python3.13 (stock GIL builds, from PATH or pyenv) and
# python3.13t (free-threaded), so nox's "3.13t" session finds it.
#
# The free-threaded build is looked for on PATH, in pyenv, among uv-managed
# interpreters and in the cache; when none is found it is built from Debian's
# python3.13 source package (suite trixie) into the cache.  A second run takes
# well under a second.
#
# Usage: tools/find-pythons.sh [--require 3.11,3.12,3.13,3.13t]
# Environment: FTPIPE_CACHE (default ~/.cache/ftpipe).
set -euo pipefail

CACHE="${FTPIPE_CACHE:-$HOME/.cache/ftpipe}"
PREFIX="$CACHE/cpython-3.13t"
BIN="$CACHE/bin"
REQUIRE="3.13t"
DEBIAN_VERSION_PREFIX="3.13"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --require) REQUIRE="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "find-pythons: unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { echo "find-pythons: $*" >&2; }

is_free_threaded_313() {
  "$1" -c 'import sys, sysconfig; sys.exit(0 if sys.version_info[:2] == (3, 13) and sysconfig.get_config_var("Py_GIL_DISABLED") == 1 else 1)' >/dev/null 2>&1
}

is_gil_build() {  # $1 interpreter, $2 X.Y
  "$1" -c "import sys, sysconfig; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$2' and not sysconfig.get_config_var('Py_GIL_DISABLED') else 1)" >/dev/null 2>&1
}

pyenv_root() {
  if command -v pyenv >/dev/null 2>&1; then pyenv root; elif [[ -d "$HOME/.pyenv" ]]; then echo "$HOME/.pyenv"; fi
}

find_free_threaded() {
  local c
  for c in "$PREFIX/bin/python3.13t" "$(command -v python3.13t || true)"; do
    [[ -n "$c" && -x "$c" ]] && is_free_threaded_313 "$c" && { echo "$c"; return 0; }
  done
  local root; root="$(pyenv_root)"
  for c in ${root:+$root/versions/3.13*t/bin/python3.13t} \
           "$HOME"/.local/share/uv/python/cpython-3.13*freethreaded*/bin/python3.13t; do
    [[ -x "$c" ]] && is_free_threaded_313 "$c" && { echo "$c"; return 0; }
  done
  return 1
}

find_gil_build() {  # $1 X.Y
  local c root; root="$(pyenv_root)"
  # pyenv's real binaries first: its shims depend on the caller's directory.
  for c in ${root:+$root/versions/$1*/bin/python$1} "$(command -v "python$1" || true)"; do
    [[ -n "$c" && -x "$c" ]] || continue
    [[ "$c" == "$BIN/"* || "$c" == */shims/* ]] && continue
    is_gil_build "$c" "$1" && { echo "$c"; return 0; }
  done
  return 1
}

debian_mirror() {
  # The machine's own Debian mirror, read from its apt sources (deb822 or one-line).
  local f uri
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r "$f" ]] || continue
    uri="$(grep -hoE '^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)[a-z]+://[^[:space:]]+/debian/?([[:space:]]|$)' "$f" \
           | grep -oE '[a-z]+://[^[:space:]]+' | head -n1 || true)"
    [[ -n "$uri" ]] && { echo "${uri%/}"; return 0; }
  done
  return 1
}

build_free_threaded() {
  command -v apt-get >/dev/null || { log "no free-threaded CPython 3.13 found and apt-get is unavailable; install python3.13t (e.g. 'uv python install 3.13t' or pyenv's 3.13t) and re-run"; exit 1; }
  command -v make >/dev/null && command -v gcc >/dev/null || { log "building 3.13t needs gcc and make: apt-get install build-essential"; exit 1; }
  local mirror; mirror="$(debian_mirror)" || { log "no Debian mirror in /etc/apt; install python3.13t yourself and re-run"; exit 1; }
  # A directory of this run's own: another run must never delete a build in progress.
  local work; work="$(mktemp -d "$CACHE/build.XXXXXX")"
  local apt="$work/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
  echo "deb-src $mirror trixie main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
  log "building free-threaded CPython 3.13 from Debian trixie's python3.13 source ($mirror); takes a few minutes"
  apt-get "${opts[@]}" -qq update >&2
  (cd "$apt/src" && apt-get "${opts[@]}" -qq source --download-only python3.13 >&2)
  local tarball; tarball="$(ls "$apt"/src/python3.13_${DEBIAN_VERSION_PREFIX}*.orig.tar.* | head -n1)"
  mkdir -p "$work/src"; tar -xf "$tarball" -C "$work/src" --strip-components=1
  # Headers the stdlib's C modules need; install only what is missing.
  local deps=(libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev)
  local missing=() d
  for d in "${deps[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing build dependencies: ${missing[*]}"
    apt-get -qq update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y "${missing[@]}" >&2
  fi
  (cd "$work/src" && ./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install >"$work/configure.log" 2>&1 \
     && make -j"$(nproc)" >"$work/make.log" 2>&1 && make install >"$work/install.log" 2>&1) \
     || { log "build failed; see logs in $work"; exit 1; }
  is_free_threaded_313 "$PREFIX/bin/python3.13t" || { log "built interpreter is not free-threaded; see $work"; exit 1; }
  rm -rf "$work"
}

mkdir -p "$BIN"
# One run at a time: a run that starts while another builds waits for that build and
# uses it, instead of starting a second build beside it.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE/find-pythons.lock"
  flock 9
fi
ft="$(find_free_threaded || true)"
if [[ -z "$ft" ]]; then
  build_free_threaded
  ft="$PREFIX/bin/python3.13t"
fi
ln -sfn "$ft" "$BIN/python3.13t"

for v in 3.11 3.12 3.13; do
  if p="$(find_gil_build "$v")"; then
    ln -sfn "$p" "$BIN/python$v"
  else
    rm -f "$BIN/python$v"
  fi
done

status=0
IFS=, read -ra wanted <<< "$REQUIRE"
for w in "${wanted[@]}"; do
  if [[ ! -x "$BIN/python$w" ]]; then
    log "required interpreter python$w not found (looked on PATH and in pyenv); install it, e.g. 'pyenv install $w'"
    status=1
  fi
done
echo "$BIN"
exit $status
