// The app's data account: the outbox queue and its poison queue, the completion queue, the send
// table, the pacing table and the attachment container; each granted to the app on
// its own (rbac.bicep). The Functions host's state is in host-storage.bicep's account. Entra auth
// only: no shared keys.
param name string
param location string
param tags object = {}
param queueName string
param tableName string
@description('Table of the per-mailbox pacing shared by all instances (one entity per mailbox).')
param pacingTableName string
@description('Queue that queue producers may name for completion messages (envelope "notify").')
param completionQueueName string
param attachmentContainerName string
@description('Deny public network access (requires the private networking option).')
param privateNetworking bool = false

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches storage over public endpoints, privateNetworking=true denies them
  // checkov:skip=CKV_AZURE_59: public network access is a parameter (privateNetworking), off by default so the template deploys without a VNet
  // checkov:skip=CKV2_AZURE_1: Microsoft-managed keys, customer-managed keys are a compliance choice outside this template
  // checkov:skip=CKV2_AZURE_33: private endpoints come with privateNetworking=true
  // checkov:skip=CKV_AZURE_206: ZRS keeps three copies across zones, a transient outbox and send log need no geo-replica
  // checkov:skip=CKV_AZURE_33: queue classic logging is superseded by diagnostic settings to Log Analytics
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

resource attachmentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: attachmentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource outboxQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: queueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${queueName}-poison'
}

resource completionQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: completionQueueName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource sendTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

resource pacingTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: pacingTableName
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output outboxQueueId string = outboxQueue.id
output poisonQueueId string = poisonQueue.id
output completionQueueName string = completionQueue.name
output sendTableId string = sendTable.id
output attachmentContainerId string = attachmentContainer.id
