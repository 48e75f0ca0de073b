"""The Bicep under infra/: every file parses, the app gets every setting it reads, and no keys anywhere."""

from __future__ import annotations

import json
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


# --- least privilege ----------------------------------------------------------------------------
# Scopes that reach more than one container, queue, table or secret: allowed only with a reason.
BROAD = {"Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults", "Microsoft.Resources/resourceGroups"}


def role_assignments() -> list[tuple[str, str, str, str]]:
    """(file, symbolic name, the scope's resource type, the block's text) of every role assignment."""
    found = []
    for path in BICEP_FILES:
        text = path.read_text()
        types: dict[str, str] = {}
        # A nested resource's type is its last segment only ('containers', 'queues', 'secrets'):
        # never one of the broad types, which is all this test needs to know.
        for match in re.finditer(r"^\s*resource (\w+) '([^'@]+)(?:@[^']*)?'", text, flags=re.MULTILINE):
            types[match.group(1)] = match.group(2)
        for match in re.finditer(r"resource (\w+) 'Microsoft\.Authorization/roleAssignments@[\d-]+' =[^{]*\{", text):
            body = _block(text, match.group(0))
            scope = re.search(r"^\s*scope: ([\w:\[\]]+)", body, flags=re.MULTILINE)
            target = scope.group(1).split("::")[-1].split("[")[0] if scope else ""
            kind = types.get(target, "Microsoft.Resources/resourceGroups")  # no scope: the deployment's group
            found.append((path.name, match.group(1), kind, body))
    return found


def test_the_role_assignments_are_found() -> None:
    names = {name for _, name, _, _ in role_assignments()}

    assert {"hostBlobs", "attachmentReader", "outboxContributor", "tableContributor", "secretReaders"} <= names


def test_the_shared_pacing_container_and_table_are_created_and_the_app_may_use_only_them() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()
    roles = {name: body for _, name, _, body in role_assignments()}

    assert "name: pacingContainerName" in storage
    assert "name: pacingTableName" in storage
    assert "scope: storage::blobService::pacing\n" in roles["pacingSlots"]
    assert "scope: storage::tableService::pacing\n" in roles["pacingWindow"]


@pytest.mark.parametrize("assignment", role_assignments(), ids=lambda a: f"{a[0]}:{a[1]}")
def test_no_role_assignment_reaches_a_whole_account_vault_or_group_without_a_written_reason(
    assignment: tuple[str, str, str, str],
) -> None:
    _, _, kind, body = assignment

    assert kind not in BROAD or "// scope:" in body, f"{kind} scope with no '// scope:' reason"


def test_the_app_has_no_role_on_the_whole_storage_account() -> None:
    storage_wide = [(f, n) for f, n, kind, _ in role_assignments() if kind == "Microsoft.Storage/storageAccounts"]

    assert storage_wide == []


def test_the_deployer_may_be_a_pipelines_service_principal() -> None:
    rbac = (INFRA / "app" / "rbac.bicep").read_text()

    assert "principalType: deployerPrincipalType" in rbac
    assert "'User'\n  }" not in rbac


def test_every_parameter_can_be_set_from_an_azd_environment_variable() -> None:
    declared = set(re.findall(r"^param (\w+) ", (INFRA / "main.bicep").read_text(), flags=re.MULTILINE))
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]

    assert declared == set(parameters)
    assert all(re.fullmatch(r"\$\{[A-Z0-9_]+(=[^}]*)?\}", p["value"]) for p in parameters.values())


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("app/keyvault-access.bicep", "category: 'AuditEvent'"),
        ("app/diagnostics.bicep", "scope: storage::blobService"),
        ("app/diagnostics.bicep", "scope: storage::queueService"),
        ("app/diagnostics.bicep", "scope: storage::tableService"),
        ("app/diagnostics.bicep", "category: 'FunctionAppLogs'"),
    ],
)
def test_audit_and_access_logs_go_to_log_analytics(path: str, what: str) -> None:
    text = (INFRA / path).read_text()

    assert what in text
    assert "workspaceId: logAnalyticsId" in text


# Microsoft's Flex Consumption quickstart sets only this in siteConfig; Flex sites refuse others
# (ARM error 51021 names ftpsState), so the first deployment would fail on any property added here.
FLEX_SITE_CONFIG = {"minTlsVersion"}


def test_the_flex_site_config_sets_only_what_flex_consumption_accepts() -> None:
    site_config = _block((INFRA / "app" / "function.bicep").read_text(), "siteConfig: {")

    properties = set(re.findall(r"^\s*([A-Za-z0-9_]+):", site_config, flags=re.MULTILINE))

    assert properties == FLEX_SITE_CONFIG


def test_purge_protection_is_never_passed_to_key_vault_as_false() -> None:
    vault = _block((INFRA / "app" / "keyvault.bicep").read_text(), "properties: {")

    value = re.search(r"^\s*enablePurgeProtection:\s*(.+)$", vault, flags=re.MULTILINE)

    assert value is not None
    # Key Vault refuses false ("does not accept false as its value"): off must be null.
    assert value.group(1).strip() == "enablePurgeProtection ? true : null"


def test_the_outbox_queue_name_leaves_room_for_its_poison_queue() -> None:
    main = (INFRA / "main.bicep").read_text()

    declared = re.search(r"@maxLength\((\d+)\)\s*\nparam queueName string", main)

    assert declared is not None
    assert int(declared.group(1)) + len("-poison") <= 63  # Azure Storage's longest queue name
