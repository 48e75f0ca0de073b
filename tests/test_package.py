"""The Function App's deployment package: built from the working tree the way the deployment tools
build it (every file not matched by ``.funcignore``, gitignore patterns), it holds the app and
nothing else of the repository, however many virtualenvs, caches and tools the developer has."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pathspec
import pytest

ROOT = Path(__file__).resolve().parent.parent
WANTED = {"function_app.py", "connector_openapi.py", "host.json", "requirements.txt", "m365send"}
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
    "m365send/__pycache__/models.cpython-311.pyc",
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

    assert {name.split("/", 1)[0] for name in files} == WANTED
    assert "m365send/sendonce.py" in files
    assert len(archive) < 1_000_000, f"{len(archive):,} bytes"


@pytest.mark.parametrize("path", GENERATED)
def test_what_a_developer_generates_stays_out_of_the_package(path: str) -> None:
    assert _ignored().match_file(path)


def test_every_top_level_entry_of_the_repository_is_either_packaged_or_ignored() -> None:
    ignored = _ignored()
    tracked = {p.name for p in ROOT.iterdir()} - {".git"}

    stray = {
        name for name in tracked - WANTED if not ignored.match_file(name + ("/" if (ROOT / name).is_dir() else ""))
    }

    assert not stray, f"add these to .funcignore: {sorted(stray)}"
