"""The Function App's deployment package: built from the working tree the way the deployment tools
build it (every file not matched by ``.funcignore``, gitignore patterns), it holds the app and
nothing else of the repository, however many virtualenvs, caches and tools the developer has."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
WANTED = {"function_app.py", "connector_openapi.py", "host.json", "requirements.txt", "m365send"}
# The top-level modules' bytecode, once compiled (infra/hooks/prepackage.sh).
BYTECODE = "__pycache__"
# What a developer's tree grows (./scripts/test, ./bench/run, ./scripts/local, azd, an IDE).
GENERATED = [
    ".venv/bin/python",
    ".venv-infra/bin/checkov",
    ".venv-bench/bin/python",
    ".mypy_cache/3.11/m.json",
    ".pytest_cache/v/cache",
    ".ruff_cache/0.1/x",
    ".hypothesis/examples/x",
    ".local/env",
    ".azure/prod/.env",
    "node_modules/.bin/azurite",
    "m365send.egg-info/PKG-INFO",
    "tests/__pycache__/test_package.cpython-311-pytest-9.0.2.pyc",
    "bench/__pycache__/bench.cpython-311.pyc",
    "local.settings.json",
]


def _ignored() -> pathspec.PathSpec[Any]:
    return pathspec.PathSpec.from_lines("gitignore", (ROOT / ".funcignore").read_text().splitlines())


def _package() -> tuple[list[str], bytes]:
    ignored = _ignored()
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        here = Path(folder).relative_to(ROOT)
        # An ignored folder is not entered, as the tools skip it (and a virtualenv is large).
        subfolders[:] = [d for d in subfolders if not ignored.match_file(f"{here / d}/".removeprefix("./"))]
        files += [str(here / n).removeprefix("./") for n in names if not ignored.match_file(str(here / n))]
    files.sort()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            archive.write(ROOT / name, name)
    return files, buffer.getvalue()


def test_the_package_holds_the_app_and_nothing_else_of_the_repository() -> None:
    files, archive = _package()

    assert {name.split("/", 1)[0] for name in files} - {BYTECODE} == WANTED
    assert "m365send/sendonce.py" in files
    assert len(archive) < 1_000_000, f"{len(archive):,} bytes"


@pytest.mark.parametrize("path", GENERATED)
def test_what_a_developer_generates_stays_out_of_the_package(path: str) -> None:
    assert _ignored().match_file(path)


def test_every_top_level_entry_of_the_repository_is_either_packaged_or_ignored() -> None:
    ignored = _ignored()
    tracked = {p.name for p in ROOT.iterdir()} - {".git"}

    stray = {
        name
        for name in tracked - WANTED - {BYTECODE}
        if not ignored.match_file(name + ("/" if (ROOT / name).is_dir() else ""))
    }

    assert not stray, f"add these to .funcignore: {sorted(stray)}"


def test_the_package_carries_the_apps_bytecode_checked_by_hash_not_file_time(tmp_path: Path) -> None:
    # The package runs from a read-only mount: without bytecode in it, every new instance compiles
    # m365send again. The prepackage hook compiles it; a hash check keeps it valid whatever times
    # the package gives the files, and never runs an edited source from old bytecode.
    for name in ("function_app.py", "connector_openapi.py", "m365send", "infra/hooks/prepackage.sh"):
        source, copy = ROOT / name, tmp_path / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3.11").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    shell = shutil.which("sh") or "/bin/sh"
    subprocess.run([shell, str(tmp_path / "infra/hooks/prepackage.sh")], env=env, check=True, capture_output=True)

    sources = [tmp_path / "function_app.py", tmp_path / "connector_openapi.py", *(tmp_path / "m365send").glob("*.py")]
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:16]
        assert int.from_bytes(header[4:8], "little") == 0b11, f"{cached.name}: not a checked-hash .pyc"
        assert header[8:16] == importlib.util.source_hash(source.read_bytes()), f"{cached.name}: stale"
        assert not _ignored().match_file(str(cached.relative_to(tmp_path))), f"{cached.name}: left out of the package"
    os.utime(tmp_path / "m365send" / "names.py", (1, 1))  # a file time the bytecode never saw
    loaded = subprocess.run(
        [sys.executable, "-v", "-c", "import m365send.names"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "code object from '" + str(tmp_path / "m365send" / "__pycache__") in loaded.stderr
