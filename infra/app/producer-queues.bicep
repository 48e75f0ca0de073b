// One outbox queue per producing service (M365_OUTBOX_QUEUES): the queue is the service's identity
// in the sender policy, so the service gets Storage Queue Data Message Sender on its own queue only
// (it can add messages there and nowhere else), and the app reads, hands back and poisons them.
// Roles scoped to one queue: https://learn.microsoft.com/azure/storage/queues/assign-azure-role-data-access
param storageAccountName string
@description('[{ queue: name, principalId: the producing service\'s managed identity (object id) }].')
param producers array
@description('The Function App\'s managed identity (object id).')
param appPrincipalId string

// Storage Queue Data Message Sender: add messages, nothing else (not even peek).
var messageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
// Storage Queue Data Contributor: what the queue trigger needs (receive, delete, update, add).
var queueContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
  resource queueService 'queueServices' existing = {
    name: 'default'
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for producer in producers: {
    parent: storage::queueService
    name: producer.queue
  }
]

resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for producer in producers: {
    parent: storage::queueService
    name: '${producer.queue}-poison'
  }
]

resource producerSends 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (producer, i) in producers: {
    name: guid(queues[i].id, producer.principalId, messageSender)
    scope: queues[i]
    properties: {
      principalId: producer.principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', messageSender)
    }
  }
]

resource appReads 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (producer, i) in producers: {
    name: guid(queues[i].id, appPrincipalId, queueContributor)
    scope: queues[i]
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueContributor)
    }
  }
]

resource appPoisons 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (producer, i) in producers: {
    name: guid(poisonQueues[i].id, appPrincipalId, queueContributor)
    scope: poisonQueues[i]
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueContributor)
    }
  }
]

output queueNames array = [for (producer, i) in producers: queues[i].name]
