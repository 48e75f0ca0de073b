// Key Vault for the app registration's client secret or PFX certificate: RBAC authorization,
// soft delete and purge protection.
param name string
param location string
param tags object = {}
@description('Deny public network access (requires the private networking option).')
param privateNetworking bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the firewall default is a parameter (privateNetworking), open by default so the operator can upload the secret
  // checkov:skip=CKV_AZURE_189: public network access is a parameter (privateNetworking), off by default
  // checkov:skip=CKV2_AZURE_32: private endpoints come with privateNetworking=true
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
    }
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
