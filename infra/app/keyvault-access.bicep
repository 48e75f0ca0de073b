// The app identity's read access to its credential in Key Vault, and the vault's audit log. A module
// of its own so that an existing vault in another resource group can be used.
param keyVaultName string
param principalId string
@description('The secrets the app reads: the client secret, or the certificate and its password.')
param secretNames array
@description('Grant per secret (they must exist). False only for a vault this template created, before the secrets are uploaded.')
param secretScoped bool = true
@description('Log Analytics workspace for the vault\'s AuditEvent log (who read which secret).')
param logAnalyticsId string
@description('The vault is this template\'s own (not an existing, shared one). Only then is the AuditEvent setting added (on a shared vault it needs rights there, a resource takes at most 5, and its owner audits it) and a vault-wide grant ever made.')
param ownVault bool = true

// Key Vault Secrets User: read secret values (the client secret, or a certificate's PFX).
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = [
  for name in secretNames: {
    parent: vault
    name: name
  }
]

resource secretReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in secretNames: if (secretScoped) {
    name: guid(secrets[i].id, principalId, keyVaultSecretsUser)
    scope: secrets[i]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    }
  }
]

resource vaultReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!secretScoped) {
  // scope: the vault, only while the secrets do not exist yet (a role assignment cannot name a secret
  // that is not there), and only on the vault this template created for m365send alone, which holds
  // nothing else; docs/deploy.md's second `azd provision` (M365_SECRETS_UPLOADED=true) narrows it.
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource auditEvents 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (ownVault) {
  name: 'm365send-audit'
  scope: vault
  properties: {
    workspaceId: logAnalyticsId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output uri string = vault.properties.vaultUri
// The vault-wide grant's id whether or not this deployment made it: azd deploys incrementally, so a
// grant left from the first provision stays until deleted; the postprovision hook deletes it once the
// grant is per secret (infra/hooks/postprovision.sh).
output vaultWideGrantId string = ownVault && secretScoped ? '${vault.id}/providers/Microsoft.Authorization/roleAssignments/${guid(vault.id, principalId, keyVaultSecretsUser)}' : ''
