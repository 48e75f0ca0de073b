#!/bin/sh
# azd postprovision hook.
# 1. Once the credential secrets are uploaded (M365_SECRETS_UPLOADED=true), the app reads each secret
#    through a grant on that secret alone, and the vault-wide grant of the first provision must go.
#    azd deploys incrementally: a role assignment the template no longer declares is not removed, so
#    this deletes it by its id (KEY_VAULT_WIDE_GRANT_ID, a main.bicep output; empty when there is
#    none to delete: the federated mode, a shared vault, or before the secrets are uploaded).
#    https://learn.microsoft.com/azure/azure-resource-manager/templates/deployment-modes
# 2. In the federated mode, say what the app registration's federated credential must be, unless
#    the template created it (M365_CREATE_APP_REGISTRATION=true).
set -eu

if [ -n "${KEY_VAULT_WIDE_GRANT_ID:-}" ]; then
  if ! command -v az >/dev/null 2>&1; then
    echo "m365send: delete the vault-wide Key Vault grant with 'az role assignment delete --ids $KEY_VAULT_WIDE_GRANT_ID' (the Azure CLI is not installed here)" >&2
    exit 1
  fi
  echo "m365send: removing the vault-wide Key Vault grant; the app now reads only its credential's secrets"
  # Deleting an assignment that is already gone succeeds: a second provision is harmless.
  az role assignment delete --ids "$KEY_VAULT_WIDE_GRANT_ID" --only-show-errors
fi

if [ "${M365_CREDENTIAL:-}" = "federated" ] && [ "${M365_CREATE_APP_REGISTRATION:-false}" != "true" ]; then
  cat <<MESSAGE
m365send: federated credential mode. Unless app ${M365_APP_CLIENT_ID:-<M365_CLIENT_ID>} already trusts this
deployment's managed identity, add the federated credential (docs/deploy.md, step 2):
  az ad app federated-credential create --id ${M365_APP_CLIENT_ID:-<M365_CLIENT_ID>} --parameters '{"name": "m365send-function", "issuer": "${FEDERATED_ISSUER:-}", "subject": "${FEDERATED_SUBJECT:-}", "audiences": ["${FEDERATED_AUDIENCE:-api://AzureADTokenExchange}"]}'
MESSAGE
fi
