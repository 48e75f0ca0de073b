"""The Bicep under infra/: every file parses, the app gets every setting it reads, and no keys anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pycep import BicepParser

from m365send.settings import Settings

INFRA = Path(__file__).resolve().parent.parent / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
# The one setting the Bicep leaves out on purpose: a storage connection string carries an account
# key; in Azure the identity-based AzureWebJobsStorage__* settings replace it.
NOT_IN_AZURE = {"AzureWebJobsStorage"}


def _block(text: str, opening: str) -> str:
    """The text of the ``{ ... }`` block that starts at ``opening``."""
    start = text.index(opening) + len(opening)
    depth = 1
    for position in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[start:position]
    raise AssertionError(f"unbalanced block after {opening!r}")


def app_setting_names() -> set[str]:
    """Keys of the app settings object in main.bicep and of the settings function.bicep adds."""
    main = _block((INFRA / "main.bicep").read_text(), "appSettings: {")
    function = _block((INFRA / "app" / "function.bicep").read_text(), "union(appSettings, {")
    return set(re.findall(r"^\s*([A-Za-z0-9_]+):", main + function, flags=re.MULTILINE))


def test_there_is_bicep_to_check() -> None:
    assert INFRA / "main.bicep" in BICEP_FILES
    assert len(BICEP_FILES) >= 6


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    BicepParser().parse(text=path.read_text())


def test_a_broken_bicep_file_fails_to_parse() -> None:
    with pytest.raises(Exception, match="Unexpected"):
        BicepParser().parse(text="resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n")


def test_every_setting_the_code_reads_is_set_by_the_bicep() -> None:
    read_by_code = {str(field.validation_alias) for field in Settings.model_fields.values()} - NOT_IN_AZURE

    missing = read_by_code - app_setting_names()

    assert not missing, f"set these in infra/main.bicep appSettings: {sorted(missing)}"


def test_the_host_storage_connection_is_identity_based() -> None:
    names = app_setting_names()

    assert {"AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId"} <= names
    assert "AzureWebJobsStorage" not in names


@pytest.mark.parametrize(
    "pattern",
    [r"listKeys\(", r"AccountKey=", r"primaryKey", r"SharedAccessSignature", r"DefaultEndpointsProtocol", r"listKeys"],
)
def test_no_storage_key_or_key_connection_string_appears_in_infra(pattern: str) -> None:
    for path in INFRA.rglob("*"):
        if path.is_file():
            assert not re.search(pattern, path.read_text()), f"{pattern} in {path.relative_to(INFRA)}"


def test_shared_key_access_is_disabled_on_the_storage_account() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()

    assert "allowSharedKeyAccess: false" in storage
    assert "allowBlobPublicAccess: false" in storage


def test_every_role_assignment_is_named_by_scope_principal_and_role() -> None:
    for path in BICEP_FILES:
        text = path.read_text()
        for block_start in [
            m.end() for m in re.finditer(r"Microsoft\.Authorization/roleAssignments@[\d-]+' =[^{]*\{", text)
        ]:
            body = text[block_start : block_start + 400]
            assert re.search(r"name: guid\([^,]+, [^,]+, [^)]+\)", body), f"unnamed role assignment in {path.name}"
