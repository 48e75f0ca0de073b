"""The Bicep under infra/: every file parses, the app gets every setting it reads, and no keys anywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from pycep import BicepParser

from m365send.settings import Settings

INFRA = Path(__file__).resolve().parent.parent / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
# The one setting the Bicep leaves out on purpose: a storage connection string carries an account
# key; in Azure the identity-based M365Storage__* settings replace it.
NOT_IN_AZURE = {"M365Storage"}
# The Microsoft Graph Bicep extension's statement, which Bicep has and the parser used here lacks.
EXTENSION = re.compile(r"^extension '[^']+'\n", flags=re.MULTILINE)


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
    BicepParser().parse(text=EXTENSION.sub("", path.read_text()))


def test_a_broken_bicep_file_fails_to_parse() -> None:
    with pytest.raises(Exception, match="Unexpected"):
        BicepParser().parse(text="resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n")


def test_every_setting_the_code_reads_is_set_by_the_bicep() -> None:
    read_by_code = {str(field.validation_alias) for field in Settings.model_fields.values()} - NOT_IN_AZURE

    missing = read_by_code - app_setting_names()

    assert not missing, f"set these in infra/main.bicep appSettings: {sorted(missing)}"


@pytest.mark.parametrize("connection", ["AzureWebJobsStorage", "M365Storage"])
def test_both_storage_connections_are_identity_based(connection: str) -> None:
    names = app_setting_names()

    assert {f"{connection}__credential", f"{connection}__clientId", f"{connection}__blobServiceUri"} <= names
    assert connection not in names


def test_the_host_and_the_app_data_use_two_storage_accounts() -> None:
    function = (INFRA / "app" / "function.bicep").read_text()

    assert "AzureWebJobsStorage__blobServiceUri: hostStorage.properties.primaryEndpoints.blob" in function
    assert "M365Storage__blobServiceUri: storage.properties.primaryEndpoints.blob" in function
    # The Flex deployment package is host state: in the host's account.
    assert "value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'" in function


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


def test_the_shared_pacing_table_is_created_and_the_app_may_use_only_it() -> None:
    storage = (INFRA / "app" / "storage.bicep").read_text()
    roles = {name: body for _, name, _, body in role_assignments()}

    assert "name: pacingTableName" in storage
    assert "scope: storage::tableService::pacing\n" in roles["pacingWindow"]
    # The limiter keeps both limits in its table: no pacing blobs, so no Blob role for pacing.
    assert "pacingContainer" not in storage
    assert not any("pacing" in body and "blobService" in body for body in roles.values())


@pytest.mark.parametrize("assignment", role_assignments(), ids=lambda a: f"{a[0]}:{a[1]}")
def test_no_role_assignment_reaches_a_whole_account_vault_or_group_without_a_written_reason(
    assignment: tuple[str, str, str, str],
) -> None:
    _, _, kind, body = assignment

    assert kind not in BROAD or "// scope:" in body, f"{kind} scope with no '// scope:' reason"


def test_only_the_host_account_is_granted_as_a_whole_and_only_the_documented_roles() -> None:
    storage_wide = {
        (n, re.search(r"roleDefinitions', (\w+)\)", body).group(1))  # type: ignore[union-attr]
        for _, n, kind, body in role_assignments()
        if kind == "Microsoft.Storage/storageAccounts"
    }

    assert storage_wide == {
        ("hostBlobs", "storageBlobDataOwner"),
        ("hostDiagnosticEvents", "storageTableDataContributor"),
    }
    for _, name, kind, body in role_assignments():
        if kind == "Microsoft.Storage/storageAccounts":
            assert "scope: hostStorage\n" in body, f"{name} reaches the app's data account as a whole"


def test_no_role_is_granted_to_the_deployer() -> None:
    # azd deploys a Flex Consumption app through the platform, which writes the package with the
    # app's identity; a Blob role for the person deploying would be unused.
    main = (INFRA / "main.bicep").read_text()
    rbac = (INFRA / "app" / "rbac.bicep").read_text()

    assert "deployer" not in rbac.lower()
    assert "param principalId" not in main


# Every role the app's identity holds, the scope it is granted at, and the Microsoft document it rests on.
# docs/deploy.md's roles table gives the same; the test below keeps the two and the Bicep in step.
ROLES = {
    "hostBlobs": (
        "Storage Blob Data Owner",
        "the host's account",
        "functions-reference#connecting-to-host-storage-with-an-identity",
    ),
    "hostDiagnosticEvents": (
        "Storage Table Data Contributor",
        "the host's account",
        "functions-reference#connecting-to-host-storage-with-an-identity",
    ),
    "outboxContributor": (
        "Storage Queue Data Contributor",
        "the outbox queue",
        "functions-bindings-storage-queue-trigger#identity-based-connections",
    ),
    "poisonContributor": (
        "Storage Queue Data Contributor",
        "the poison queue",
        "functions-bindings-storage-queue-trigger#poison-messages",
    ),
    "completionSender": (
        "Storage Queue Data Message Sender",
        "the completion queue",
        "storage/queues/authorize-access-azure-active-directory",
    ),
    "producerSends": (
        "Storage Queue Data Message Sender",
        "each producer's own outbox queue",
        "storage/queues/assign-azure-role-data-access",
    ),
    "appReads": (
        "Storage Queue Data Contributor",
        "each producer's outbox queue",
        "functions-bindings-storage-queue-trigger#identity-based-connections",
    ),
    "appPoisons": (
        "Storage Queue Data Contributor",
        "each producer queue's poison queue",
        "functions-bindings-storage-queue-trigger#poison-messages",
    ),
    "tableContributor": (
        "Storage Table Data Contributor",
        "the send table",
        "storage/tables/authorize-access-azure-active-directory",
    ),
    "pacingWindow": (
        "Storage Table Data Contributor",
        "the pacing table",
        "storage/tables/authorize-access-azure-active-directory",
    ),
    "attachmentReader": (
        "Storage Blob Data Reader",
        "the attachment container",
        "storage/blobs/authorize-access-azure-active-directory",
    ),
    "metricsPublisher": (
        "Monitoring Metrics Publisher",
        "Application Insights",
        "azure-monitor/app/azure-ad-authentication",
    ),
    "secretReaders": ("Key Vault Secrets User", "each credential secret", "key-vault/general/rbac-guide"),
    "vaultReader": ("Key Vault Secrets User", "the vault, until the secrets exist", "key-vault/general/rbac-guide"),
}


def test_every_role_assignment_is_listed_with_the_document_it_rests_on() -> None:
    assert {name for _, name, _, _ in role_assignments()} == set(ROLES)


@pytest.mark.parametrize(("name", "role"), [(n, r) for n, (r, _, _) in ROLES.items()])
def test_docs_deploy_lists_each_role_with_its_scope_and_document(name: str, role: str) -> None:
    deploy = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
    _, scope, document = ROLES[name]

    rows = [line for line in deploy.splitlines() if line.startswith("|") and role in line and scope in line]

    assert rows, f"docs/deploy.md has no roles-table row for {role} on {scope}"
    assert any(document in row for row in rows), f"the {role} row on {scope} does not cite {document}"


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


# --- the federated credential ---------------------------------------------------------------------


def test_the_federated_mode_is_the_default_and_needs_no_vault() -> None:
    main = (INFRA / "main.bicep").read_text()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]

    assert "param credentialType string = 'federated'" in main
    assert parameters["credentialType"]["value"] == "${M365_CREDENTIAL_TYPE=federated}"
    assert "var useVault = credentialType != 'federated'" in main
    assert "module keyVault 'app/keyvault.bicep' = if (useVault && !useExistingVault)" in main
    assert "module keyVaultAccess 'app/keyvault-access.bicep' = if (useVault)" in main
    assert "KEY_VAULT_URL: useVault ? keyVaultAccess.outputs.uri : ''" in main


def test_the_app_trusts_the_function_apps_own_identity() -> None:
    main = (INFRA / "main.bicep").read_text()

    assert "M365_FEDERATED_CLIENT_ID: useVault ? '' : identity.outputs.clientId" in main
    assert "FEDERATED_SUBJECT string = identity.outputs.principalId" in main
    assert "FEDERATED_ISSUER string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'" in main


def test_the_optional_app_registration_is_off_by_default_and_federated_only() -> None:
    main = (INFRA / "main.bicep").read_text()

    assert "param createAppRegistration bool = false" in main
    assert "module appRegistration 'app/app-registration.bicep' = if (createAppRegistration && !useVault)" in main


def test_the_created_app_registration_trusts_the_identity_as_microsoft_documents() -> None:
    registration = (INFRA / "app" / "app-registration.bicep").read_text()
    trust = _block(registration, "resource managedIdentityTrust 'federatedIdentityCredentials@v1.0' = {")

    assert EXTENSION.search(registration), "the Microsoft Graph Bicep extension is declared"
    assert "issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'" in trust
    assert "subject: identityPrincipalId" in trust
    assert "audiences: [tokenExchangeAudience]" in trust


def test_the_created_app_registration_gets_mail_send_on_graph() -> None:
    registration = (INFRA / "app" / "app-registration.bicep").read_text()

    assert "appId: '00000003-0000-0000-c000-000000000000'" in registration  # Microsoft Graph
    assert "['Mail.Send', 'Mail.ReadWrite'] : ['Mail.Send']" in registration
    assert "resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0'" in registration
    assert "resourceId: graph.id" in registration


def test_checkov_skips_only_the_graph_extension_files() -> None:
    script = (Path(__file__).resolve().parent.parent / "scripts" / "test").read_text()
    graph_only = [
        f"infra/{path.relative_to(INFRA)}" for path in BICEP_FILES if "extensions/microsoftgraph" in path.read_text()
    ]

    assert sorted(re.findall(r"--skip-path (\S+)", script)) == sorted(graph_only)
    assert len(graph_only) == 2


# --- template defects and Flex Consumption ------------------------------------------------------------


def test_always_ready_instances_are_a_parameter_for_the_http_group() -> None:
    main = (INFRA / "main.bicep").read_text()
    function = (INFRA / "app" / "function.bicep").read_text()

    assert "param alwaysReady int = 0" in main
    assert "alwaysReady: alwaysReady" in main
    assert "name: 'http'\n            instanceCount: alwaysReady" in function


def test_the_vault_audit_setting_is_added_only_to_the_templates_own_vault() -> None:
    access = (INFRA / "app" / "keyvault-access.bicep").read_text()
    main = (INFRA / "main.bicep").read_text()

    assert "resource auditEvents 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (ownVault)" in access
    assert "ownVault: !useExistingVault" in main


def test_maximum_instance_count_says_it_caps_each_scale_group() -> None:
    main = (INFRA / "main.bicep").read_text()

    description = re.search(r"@description\('([^\n]*)'\)\nparam maximumInstanceCount", main)

    assert description is not None
    assert "per-function scale group" in description.group(1)


# --- azd hooks: a fake `az` on PATH records what they ask of Azure ---------------------------------------

HOOKS = INFRA / "hooks"


def _fake_az(tmp_path: Path, provider_state: str = "NotRegistered") -> Path:
    log = tmp_path / "az.log"
    az = tmp_path / "az"
    az.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\ncase "$*" in "provider show"*) echo {provider_state};; esac\n')
    az.chmod(az.stat().st_mode | stat.S_IEXEC)
    return log


def _hook(name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        [shutil.which("sh") or "/bin/sh", str(HOOKS / name)],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_azure_yaml_runs_every_hook() -> None:
    azure_yaml = (INFRA.parent / "azure.yaml").read_text()

    assert "run: infra/hooks/preprovision.sh" in azure_yaml
    assert "run: infra/hooks/postprovision.sh" in azure_yaml
    # A service hook: it runs before azd zips the Function App's package.
    assert "      prepackage:\n        shell: sh\n        run: infra/hooks/prepackage.sh" in azure_yaml


def test_private_networking_registers_the_microsoft_app_provider(tmp_path: Path) -> None:
    log = _fake_az(tmp_path)

    result = _hook("preprovision.sh", tmp_path, M365_PRIVATE_NETWORKING="true", AZURE_SUBSCRIPTION_ID="sub-1")

    assert result.returncode == 0, result.stderr
    assert "provider register --namespace Microsoft.App --wait --subscription sub-1" in log.read_text()


def test_a_registered_provider_is_left_alone(tmp_path: Path) -> None:
    log = _fake_az(tmp_path, provider_state="Registered")

    result = _hook("preprovision.sh", tmp_path, M365_PRIVATE_NETWORKING="true")

    assert result.returncode == 0, result.stderr
    assert "register" not in log.read_text().replace("registrationState", "")


def test_without_private_networking_the_provider_is_not_touched(tmp_path: Path) -> None:
    log = _fake_az(tmp_path)

    result = _hook("preprovision.sh", tmp_path)

    assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_the_subnet_delegation_that_needs_the_provider_is_there() -> None:
    network = (INFRA / "app" / "network.bicep").read_text()

    assert "serviceName: 'Microsoft.App/environments'" in network


def test_once_the_secrets_are_uploaded_the_vault_wide_grant_is_deleted(tmp_path: Path) -> None:
    log = _fake_az(tmp_path)
    vault = "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/v"
    grant = f"{vault}/providers/Microsoft.Authorization/roleAssignments/1"

    result = _hook("postprovision.sh", tmp_path, KEY_VAULT_WIDE_GRANT_ID=grant)

    assert result.returncode == 0, result.stderr
    assert f"role assignment delete --ids {grant} --only-show-errors" in log.read_text()


def test_with_no_vault_wide_grant_to_delete_nothing_is_deleted(tmp_path: Path) -> None:
    log = _fake_az(tmp_path)

    result = _hook("postprovision.sh", tmp_path, KEY_VAULT_WIDE_GRANT_ID="")

    assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_the_grant_id_names_the_vault_wide_assignment_only_once_it_is_per_secret() -> None:
    access = (INFRA / "app" / "keyvault-access.bicep").read_text()
    reader = _block(
        access, "resource vaultReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!secretScoped) {"
    )

    # The id the hook deletes is the one the vault-wide assignment was created under.
    assert "name: guid(vault.id, principalId, keyVaultSecretsUser)" in reader
    assert (
        "ownVault && secretScoped ? '${vault.id}/providers/Microsoft.Authorization/roleAssignments/"
        "${guid(vault.id, principalId, keyVaultSecretsUser)}' : ''"
    ) in access


def test_the_federated_mode_prints_the_credential_to_add(tmp_path: Path) -> None:
    result = _hook(
        "postprovision.sh",
        tmp_path,
        M365_CREDENTIAL="federated",
        M365_APP_CLIENT_ID="app-1",
        FEDERATED_ISSUER="https://login.microsoftonline.com/t/v2.0",
        FEDERATED_SUBJECT="principal-1",
    )

    assert result.returncode == 0, result.stderr
    assert "az ad app federated-credential create --id app-1" in result.stdout
    assert '"subject": "principal-1"' in result.stdout
