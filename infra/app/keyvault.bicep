// Key Vault for the app registration's client secret or PFX certificate: RBAC authorization,
// soft delete and purge protection.
param name string
param location string
param tags object = {}
@description('Deny public network access (requires the private networking option).')
param privateNetworking bool = false
// A parameter with a plain default, not a conditional expression inside the resource: checkov's
// CKV_AZURE_189 crashes on an expression there. main.bicep derives it from privateNetworking.
@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string = 'Enabled'
@description('Purge protection: on for production. Off lets azd down --purge delete the vault at once (dev/test); once on, Azure never lets it be turned off.')
param enablePurgeProtection bool = true

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the firewall default is a parameter (privateNetworking), open by default so the operator can upload the secret
  // checkov:skip=CKV_AZURE_189: public network access is a parameter (privateNetworking), off by default
  // checkov:skip=CKV2_AZURE_32: private endpoints come with privateNetworking=true
  // checkov:skip=CKV_AZURE_110: purge protection is a parameter, on by default; off (dev/test) must be null, which Key Vault takes where it refuses false
  // checkov:skip=CKV_AZURE_42: soft delete is always on; purge protection as CKV_AZURE_110
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
    // Key Vault refuses false here ("does not accept false as its value"): off is null, i.e. not set.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
    }
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
