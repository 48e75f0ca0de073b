// Role assignments for the app identity, each at the narrowest scope Azure supports for the need,
// named guid(scope, principal, role). tests/test_infra.py fails on any assignment at account,
// resource-group or subscription scope without a "// scope:" reason in its block, and lists the
// document each role rests on (docs/deploy.md, "Roles").
param hostStorageAccountName string
param storageAccountName string
param queueName string
param tableName string
param pacingTableName string
param completionQueueName string
param attachmentContainerName string
param applicationInsightsName string
param principalId string

// Storage Blob Data Owner: the Functions host's blobs (host id, locks, keys) and the Flex deployment
// package, on the host's own account, as Microsoft documents for identity-based AzureWebJobsStorage.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Blob Data Reader: read attachment blobs.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// Storage Queue Data Contributor: receive and delete outbox messages, hand them back, poison them.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Storage Queue Data Message Sender: completion messages on the producers' completion queue (add only).
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
// Storage Table Data Contributor: send records and dead letters; the shared pacing (window and requests
// in flight); and, on the
// host's account, the host's diagnostic events (a monthly AzureFunctionsDiagnosticEvents table).
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Monitoring Metrics Publisher: send telemetry to Application Insights with Entra auth.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'

    resource attachments 'containers' existing = {
      name: attachmentContainerName
    }
  }

  resource queueService 'queueServices' existing = {
    name: 'default'

    resource outbox 'queues' existing = {
      name: queueName
    }

    resource poison 'queues' existing = {
      name: '${queueName}-poison'
    }

    resource completions 'queues' existing = {
      name: completionQueueName
    }
  }

  resource tableService 'tableServices' existing = {
    name: 'default'

    resource sends 'tables' existing = {
      name: tableName
    }

    resource pacing 'tables' existing = {
      name: pacingTableName
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource hostBlobs 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  // scope: the host's own account, which holds only host state and the deployment package. Microsoft
  // documents Storage Blob Data Owner on the AzureWebJobsStorage account ("Connecting to host storage
  // with an identity"): the host creates its containers and leases blobs in them.
  name: guid(hostStorage.id, principalId, storageBlobDataOwner)
  scope: hostStorage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

resource hostDiagnosticEvents 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  // scope: the host's own account. Microsoft documents Storage Table Data Contributor there for the
  // host's diagnostic events, whose table the host creates each month (event AZFD0003 without it).
  name: guid(hostStorage.id, principalId, storageTableDataContributor)
  scope: hostStorage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

resource attachmentReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobService::attachments.id, principalId, storageBlobDataReader)
  scope: storage::blobService::attachments
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}

resource outboxContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueService::outbox.id, principalId, storageQueueDataContributor)
  scope: storage::queueService::outbox
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}

resource poisonContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueService::poison.id, principalId, storageQueueDataContributor)
  scope: storage::queueService::poison
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
  }
}

resource completionSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::queueService::completions.id, principalId, storageQueueDataMessageSender)
  scope: storage::queueService::completions
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::sends.id, principalId, storageTableDataContributor)
  scope: storage::tableService::sends
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

resource pacingWindow 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::tableService::pacing.id, principalId, storageTableDataContributor)
  scope: storage::tableService::pacing
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}
