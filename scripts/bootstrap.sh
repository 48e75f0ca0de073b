# Sourced by the other scripts: a virtualenv in .venv with requirements-dev.txt installed.
# Reinstalls only when the requirements files or the interpreter change, so repeated runs are quick.
# Scripts that need Azurite (Storage) call ensure_azurite after sourcing this.
set -euo pipefail
# Where the caller stood: relative paths they pass are resolved from here, not from the repository.
CALLER_PWD=${CALLER_PWD:-$PWD}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '== %s\n' "$*" >&2; }

# Azure Functions runs Python 3.11: check before installing anything.
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  found=$([ -n "$PYTHON" ] && "$PYTHON" --version 2>&1 || echo "no python3")
  echo "error: m365send needs Python 3.11 (the version Azure Functions runs), found: $found." \
    "Install python3.11 and python3.11-venv (or set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi
# A .venv made by another Python (or whose Python is gone) is rebuilt, not reused.
if [ -e .venv ] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  step "the .venv was made by another Python: rebuilding it with $("$PYTHON" --version 2>&1)"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv .venv || {
    echo "error: could not create a virtualenv; install python3.11-venv" >&2
    exit 1
  }
fi
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  step "installing Python packages into .venv (the first time takes about 2 minutes)"
  started=$SECONDS
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  # The `m365send` command, from this working tree (.venv/bin/m365send).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$wanted" > "$stamp"
  step "Python packages ready ($((SECONDS - started)) s)"
fi

# Azurite (npm) for Storage queues, tables and blobs: only the scripts that use it call this.
ensure_azurite() {
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      step "installing Node.js and npm from Debian (for Azurite)"
      apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    else
      echo "error: Azurite needs Node.js 18 or later with npm; install it and run this again" >&2
      exit 1
    fi
  fi
  local node_stamp=node_modules/.package-lock.sha256
  local node_wanted
  node_wanted=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -x node_modules/.bin/azurite ] || [ ! -f "$node_stamp" ] || [ "$(cat "$node_stamp")" != "$node_wanted" ]; then
    step "installing Azurite into node_modules (the first time takes about a minute)"
    local started=$SECONDS
    npm ci --no-audit --no-fund --loglevel=error
    echo "$node_wanted" > "$node_stamp"
    step "Azurite ready ($((SECONDS - started)) s)"
  fi
}

# Headless Chromium and its driver (Debian's packages) for the browser test of the local mailbox page.
# Installed when running as root with apt; otherwise that test says what to install and is skipped
# (CI, which sets CI=true, fails it instead).
ensure_chromium() {
  if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Chromium and chromedriver from Debian (for the browser test; the first time takes a minute or two)"
    local started=$SECONDS
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    step "Chromium ready ($((SECONDS - started)) s)"
  else
    echo "note: the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); it is skipped without them" >&2
  fi
}
