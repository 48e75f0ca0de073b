#!/bin/sh
# azd prepackage hook: the deployment package carries the app's bytecode.
# Flex Consumption runs the app from its deployment package, mounted read-only
# (https://learn.microsoft.com/azure/azure-functions/run-functions-from-deployment-package), so
# Python cannot write the bytecode cache of m365send's modules there: without .pyc files in the
# package, every new instance compiles them again (13% of a first send's instructions here;
# docs/performance.md, table 1f). The files are checked-hash .pyc (PEP 552): Python checks them
# against the source's hash, not its file time, so the package's file times cannot make them stale
# and an edited source never runs from old bytecode.
set -eu
cd "$(dirname "$0")/../.."
python=$(command -v python3.11 || command -v python3 || true)
if [ -z "$python" ]; then
  echo "m365send: no python3 here; the package ships without bytecode (each new instance compiles it)" >&2
  exit 0
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
  echo "m365send: the app's bytecode needs Python 3.11, its runtime ($python is $version); the package ships without it" >&2
  exit 0
fi
"$python" -m compileall -q -f --invalidation-mode checked-hash function_app.py connector_openapi.py m365send
echo "m365send: bytecode compiled for the package (checked-hash, Python 3.11)"
