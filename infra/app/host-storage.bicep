// The Functions host's own storage account: its blobs (host id, locks, keys, timer status), its
// diagnostic events table, and the Flex Consumption deployment container. Nothing of the app's own
// data lives here, so the account-wide roles Microsoft documents for host storage reach no email
// (the outbox, send records, pacing, attachments and completions are in storage.bicep's account).
// Entra auth only: no shared keys.
param name string
param location string
param tags object = {}
param deploymentContainerName string
@description('Deny public network access (requires the private networking option).')
param privateNetworking bool = false

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over public endpoints, privateNetworking=true denies them
  // checkov:skip=CKV_AZURE_59: public network access is a parameter (privateNetworking), off by default so the template deploys without a VNet
  // checkov:skip=CKV2_AZURE_1: Microsoft-managed keys, customer-managed keys are a compliance choice outside this template
  // checkov:skip=CKV2_AZURE_33: private endpoints come with privateNetworking=true
  // checkov:skip=CKV_AZURE_206: ZRS keeps three copies across zones, host state and the package need no geo-replica
  // checkov:skip=CKV_AZURE_33: the host uses no queues here; classic logging is superseded by diagnostic settings
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// The host creates azure-webjobs-hosts and azure-webjobs-secrets itself (Blob Data Owner includes
// creating containers); only the package container must exist before the first deployment.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
