// Read access to the vault's secrets for the app identity, at the vault's scope. A module of its
// own so that an existing vault in another resource group can be used.
param keyVaultName string
param principalId string
@description('Also grant Key Vault Certificate User (only needed to read certificates through the certificates API; m365send reads the PFX through the secrets API).')
param grantCertificateUser bool = false

// Key Vault Secrets User: read secret values (the client secret, or a certificate's PFX).
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// Key Vault Certificate User: read certificates and their metadata.
var keyVaultCertificateUser = 'db79e9a7-68ee-4b58-9aeb-b90e7c24fcba'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource certificateUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantCertificateUser) {
  name: guid(vault.id, principalId, keyVaultCertificateUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificateUser)
  }
}

output uri string = vault.properties.vaultUri
