// m365send: Function App (Flex Consumption, Python 3.11) that sends email as a Microsoft 365
// mailbox through Microsoft Graph, with its storage (the host's account and the app's data account),
// identity, RBAC and monitoring; Key Vault only for the client secret and certificate modes; and,
// optionally, the app registration itself (createAppRegistration).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment; used in resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Azure region for every resource (one that offers Flex Consumption).')
param location string

// --- Microsoft 365 ---------------------------------------------------------------------------
@description('Entra tenant of the app registration that has Graph Mail.Send; empty: the subscription\'s tenant.')
param m365TenantId string = ''
@description('Client id of that app registration; empty when createAppRegistration creates it.')
param m365ClientId string = ''
@description('Default mailbox to send as: UPN or object id.')
param m365Sender string
@description('Other mailboxes and From addresses requests may use, comma-separated. Required when m365Sender is an object id.')
param m365AllowedSenders string = ''
@allowed(['federated', 'secret', 'certificate'])
@description('How the app registration authenticates. federated (recommended): it trusts the Function App\'s managed identity, no secret exists and no Key Vault is deployed; secret or certificate: kept in Key Vault.')
param credentialType string = 'federated'
@description('The federated credential\'s audience in this cloud: api://AzureADTokenExchange (public), api://AzureADTokenExchangeUSGov, api://AzureADTokenExchangeChina.')
param tokenExchangeAudience string = 'api://AzureADTokenExchange'
@description('Create the app registration, its federated credential, service principal and Graph permissions with the Microsoft Graph Bicep extension (needs the deployer to hold Entra roles; federated mode only).')
param createAppRegistration bool = false
@description('Also grant Mail.ReadWrite to a created app registration: messages over about 3 MB and verified delivery go through drafts.')
param grantMailReadWrite bool = true
param clientSecretName string = 'm365-client-secret'
param certificateName string = 'm365-certificate'
@description('Key Vault secret holding the PFX password; empty when the PFX has none (a Key Vault certificate has none).')
param certificatePasswordName string = ''
param authorityHost string = 'https://login.microsoftonline.com'
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

// --- behaviour ---------------------------------------------------------------------------------
@description('The outbox queue. At most 56 characters: the host moves failed messages to <queueName>-poison, and a queue name has at most 63.')
@minLength(3)
@maxLength(56)
param queueName string = 'email-outbox'
param sendTableName string = 'emailsends'
@description('Container (in this storage account) that attachment blobs are read from; the app gets Blob Data Reader on it only.')
param attachmentContainerName string = 'attachments'
@minValue(1)
@maxValue(150)
@description('Most that all attachments of one message may add up to, in MB. Exchange Online mailboxes default to 35 MB; set this to your tenant\'s limit.')
param messageMaxMb int = 150
param secretCacheSeconds int = 3600
@description('How long a cached credential is still used while Key Vault is unavailable.')
param secretMaxStaleSeconds int = 86400
param graphMaxAttempts int = 4
param graphMaxRetryWaitSeconds int = 30
param httpTimeoutSeconds int = 30
@description('Graph allows 4 concurrent requests per app per mailbox; all instances together keep to this (graphPacing).')
param mailboxConcurrency int = 4
@description('Graph allows 10,000 requests per 10 minutes per app per mailbox.')
param mailboxRate int = 10000
param mailboxWindowSeconds int = 600
@allowed(['shared', 'worker'])
@description('shared: the mailbox limits hold across every instance (one Table entity per mailbox in this storage account); worker: each worker paces itself, so N instances may send N times the limit.')
param graphPacing string = 'shared'
@minValue(15)
@maxValue(60)
@description('How long a Graph request counts as in flight for the shared pacing if its instance never writes it off (a crash), in seconds: longer than one Graph request.')
param pacingLeaseSeconds int = 30
param pacingTableName string = 'mailboxpacing'
@description('Queue producers may name in an envelope\'s "notify" to be told when a send finishes (M365_COMPLETION_QUEUES).')
@minLength(3)
@maxLength(63)
param completionQueueName string = 'email-completions'
@description('Send on Behalf pairs, delegate>principal, comma-separated (M365_ON_BEHALF_OF); empty: none.')
param onBehalfOf string = ''

// --- callers ---------------------------------------------------------------------------------------
@description('Who may send as whom (M365_SENDER_POLICY): a JSON document of rules per app role, object id, named function key (by SHA-256) or queue; see docs/callers.md. Empty: the allow-lists above for every caller.')
param senderPolicy string = ''
@description('App roles of m365send\'s own API, comma-separated (with createAppRegistration): callers with an Entra ID token for the API and one of these roles are named by the sender policy. Empty: no API registration, function keys only.')
param apiAppRoles string = ''
@description('The audience of Entra ID tokens for the API (M365_API_AUDIENCE) when its registration is made elsewhere; with apiAppRoles, the registration made here.')
param apiAudience string = ''
@description('One outbox queue per producing service, as JSON: [{"queue": name, "principalId": the service\'s managed identity}]. Each service gets Storage Queue Data Message Sender on its queue only; the sender policy\'s "queue" rules give each its senders.')
param outboxProducers string = ''
@minValue(1)
@maxValue(1000)
@description('Most instances of each per-function scale group (Flex Consumption scales the HTTP functions as one group and the queue function in its own), not of the whole app. Shared pacing keeps any number within one mailbox\'s Graph limits (about 16 emails/s at 10,000 per 10 minutes), so more instances help only with many mailboxes; see docs/deploy.md.')
param maximumInstanceCount int = 40
@minValue(0)
@maxValue(20)
@description('Always-ready instances for the HTTP functions (Flex Consumption\'s answer to cold starts; billed while idle, see docs/deploy.md). 0: scale from zero.')
param alwaysReady int = 0
@minValue(1)
@maxValue(32)
@description('Queue messages one instance runs at once, overriding host.json\'s extensions.queues.batchSize; more than the mailbox concurrency only queues inside the instance. See docs/deploy.md.')
param queueBatchSize int = 16
param sendLeaseSeconds int = 300
@description('standard: at most once per key, a lost Graph answer resent and flagged; verified: exactly once, through tagged drafts (needs Mail.ReadWrite).')
@allowed(['standard', 'verified'])
param deliveryMode string = 'standard'
param idempotencyHours int = 168
param queueMaxAttempts int = 12
param queueRetryBaseSeconds int = 30
param queueMaxDelaySeconds int = 3600

// --- monitoring ------------------------------------------------------------------------------------
@description('Email address the alert rules notify (poison messages, dead letters, failure ratio, an expiring credential); empty: the rules notify no one.')
param alertEmail string = ''
@description('Dead letters in one hour that raise an alert.')
param deadLetterAlertThreshold int = 10
@minValue(1)
@maxValue(100)
@description('Percent of sends failing for the service\'s own reasons that raises an alert.')
param failureRatioAlertPercent int = 5

// --- options and names ---------------------------------------------------------------------------
@description('Use this existing Key Vault (RBAC mode) instead of creating one; its secrets must exist before deployment.')
param existingKeyVaultName string = ''
@description('The credential secrets are in the vault: grant the app read on those secrets only (set after uploading them).')
param secretsUploaded bool = false
@description('Purge protection on the vault this template creates. Off only for dev/test environments that azd down --purge should remove at once.')
param keyVaultPurgeProtection bool = true
@description('Resource group of the existing Key Vault (default: this deployment\'s group).')
param existingKeyVaultResourceGroup string = ''
@description('VNet integration and private endpoints for storage and Key Vault; public access to them is then disabled.')
param privateNetworking bool = false
param resourceGroupName string = ''
param functionAppName string = ''
param functionPlanName string = ''
param storageAccountName string = ''
param hostStorageAccountName string = ''
param keyVaultName string = ''
param identityName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param vnetName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName, service: 'm365send' }
var functionName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}m365send-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionName, 32)}-${take(resourceToken, 7)}'
var useVault = credentialType != 'federated'
var useExistingVault = useVault && !empty(existingKeyVaultName)
var vaultName = useExistingVault ? existingKeyVaultName : (!empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}')
var certificateSecretNames = empty(certificatePasswordName) ? [certificateName] : [certificateName, certificatePasswordName]
var credentialSecretNames = credentialType == 'secret' ? [clientSecretName] : certificateSecretNames
var vaultResourceGroup = useExistingVault && !empty(existingKeyVaultResourceGroup) ? existingKeyVaultResourceGroup : rg.name

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(identityName) ? identityName : '${abbrs.managedIdentityUserAssignedIdentities}m365send-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

// The Functions host's own account: host state and the deployment package only.
module hostStorage 'app/host-storage.bicep' = {
  name: 'host-storage'
  scope: rg
  params: {
    name: !empty(hostStorageAccountName) ? hostStorageAccountName : '${abbrs.storageStorageAccounts}host${take(resourceToken, 18)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    privateNetworking: privateNetworking
  }
}

// The app's data: outbox and poison queues, send records, pacing, attachments, completions.
module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    queueName: queueName
    tableName: sendTableName
    pacingTableName: pacingTableName
    completionQueueName: completionQueueName
    attachmentContainerName: attachmentContainerName
    privateNetworking: privateNetworking
  }
}

module appRegistration 'app/app-registration.bicep' = if (createAppRegistration && !useVault) {
  name: 'app-registration'
  scope: rg
  params: {
    uniqueName: 'm365send-${environmentName}-${resourceToken}'
    displayName: 'm365send (${environmentName})'
    identityPrincipalId: identity.outputs.principalId
    tokenExchangeAudience: tokenExchangeAudience
    mailReadWrite: grantMailReadWrite
  }
}

var apiRoleList = [for role in split(apiAppRoles, ','): trim(role)]
var apiRoles = empty(apiAppRoles) ? [] : apiRoleList
var producers = empty(outboxProducers) ? [] : json(outboxProducers)
var outboxQueueNames = [for producer in producers: producer.queue]

module apiRegistration 'app/api-registration.bicep' = if (createAppRegistration && !empty(apiAppRoles)) {
  name: 'api-registration'
  scope: rg
  params: {
    uniqueName: 'm365send-api-${environmentName}-${resourceToken}'
    displayName: 'm365send API (${environmentName})'
    identifierUri: 'api://m365send-${resourceToken}'
    appRoles: apiRoles
  }
}

var tokenAudience = createAppRegistration && !empty(apiAppRoles) ? apiRegistration.outputs.identifierUri : apiAudience

module producerQueues 'app/producer-queues.bicep' = if (!empty(producers)) {
  name: 'producer-queues'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    producers: producers
    appPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'app/keyvault.bicep' = if (useVault && !useExistingVault) {
  name: 'keyvault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    privateNetworking: privateNetworking
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    enablePurgeProtection: keyVaultPurgeProtection
  }
}

module keyVaultAccess 'app/keyvault-access.bicep' = if (useVault) {
  name: 'keyvault-access'
  scope: resourceGroup(vaultResourceGroup)
  params: {
    keyVaultName: vaultName
    principalId: identity.outputs.principalId
    secretNames: credentialSecretNames
    // A shared vault is granted per secret only; a vault of our own, per secret once they are uploaded.
    secretScoped: useExistingVault || secretsUploaded
    ownVault: !useExistingVault
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
  dependsOn: [keyVault]
}

module network 'app/network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: rg
  params: {
    name: !empty(vnetName) ? vnetName : '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
    hostStorageAccountId: hostStorage.outputs.id
    storageAccountId: storage.outputs.id
    keyVaultId: useVault ? resourceId(subscription().subscriptionId, vaultResourceGroup, 'Microsoft.KeyVault/vaults', vaultName) : ''
  }
  dependsOn: [keyVault]
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    hostStorageAccountName: hostStorage.outputs.name
    storageAccountName: storage.outputs.name
    queueName: queueName
    tableName: sendTableName
    pacingTableName: pacingTableName
    completionQueueName: completionQueueName
    attachmentContainerName: attachmentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
  }
  dependsOn: [storage, hostStorage]
}

module diagnostics 'app/diagnostics.bicep' = {
  name: 'diagnostics'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    functionAppName: function.outputs.name
    logAnalyticsId: monitoring.outputs.logAnalyticsId
  }
}

module dashboard 'app/dashboard.bicep' = {
  name: 'dashboard'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsId: monitoring.outputs.logAnalyticsId
    alertEmail: alertEmail
    deadLetterThreshold: deadLetterAlertThreshold
    failureRatioPercent: failureRatioAlertPercent
    resourceToken: resourceToken
  }
}

module function 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionName
    planName: !empty(functionPlanName) ? functionPlanName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorage.outputs.name
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    virtualNetworkSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    maximumInstanceCount: maximumInstanceCount
    alwaysReady: alwaysReady
    appSettings: {
      M365_TENANT_ID: empty(m365TenantId) ? subscription().tenantId : m365TenantId
      M365_CLIENT_ID: createAppRegistration && !useVault ? appRegistration.outputs.appId : m365ClientId
      // Federated: the app registration trusts this identity; its token is the client assertion.
      M365_FEDERATED_CLIENT_ID: useVault ? '' : identity.outputs.clientId
      M365_TOKEN_EXCHANGE_AUDIENCE: tokenExchangeAudience
      KEY_VAULT_URL: useVault ? keyVaultAccess.outputs.uri : ''
      M365_CLIENT_SECRET_NAME: credentialType == 'secret' ? clientSecretName : ''
      M365_CERTIFICATE_NAME: credentialType == 'certificate' ? certificateName : ''
      M365_CERTIFICATE_PASSWORD_NAME: credentialType == 'certificate' ? certificatePasswordName : ''
      M365_SENDER: m365Sender
      M365_ALLOWED_SENDERS: m365AllowedSenders
      AZURE_CLIENT_ID: identity.outputs.clientId
      M365_AUTHORITY_HOST: authorityHost
      GRAPH_BASE_URL: graphBaseUrl
      M365_SECRET_CACHE_SECONDS: string(secretCacheSeconds)
      M365_SECRET_MAX_STALE_SECONDS: string(secretMaxStaleSeconds)
      M365_GRAPH_MAX_ATTEMPTS: string(graphMaxAttempts)
      M365_GRAPH_MAX_RETRY_WAIT: string(graphMaxRetryWaitSeconds)
      M365_HTTP_TIMEOUT: string(httpTimeoutSeconds)
      M365_GRAPH_MAILBOX_CONCURRENCY: string(mailboxConcurrency)
      M365_GRAPH_MAILBOX_RATE: string(mailboxRate)
      M365_GRAPH_MAILBOX_WINDOW_SECONDS: string(mailboxWindowSeconds)
      M365_GRAPH_PACING: graphPacing
      M365_PACING_LEASE_SECONDS: string(pacingLeaseSeconds)
      M365_PACING_TABLE: pacingTableName
      // An app setting overrides host.json (AzureFunctionsJobHost__<path>), so operators tune it here.
      AzureFunctionsJobHost__extensions__queues__batchSize: string(queueBatchSize)
      M365_QUEUE_NAME: queueName
      M365_COMPLETION_QUEUES: storage.outputs.completionQueueName
      M365_ON_BEHALF_OF: onBehalfOf
      M365_SENDER_POLICY: senderPolicy
      M365_API_AUDIENCE: tokenAudience
      M365_OUTBOX_QUEUES: join(outboxQueueNames, ',')
      M365_SEND_TABLE: sendTableName
      M365_SEND_LEASE_SECONDS: string(sendLeaseSeconds)
      M365_DELIVERY_MODE: deliveryMode
      M365_DRAFT_SETTLE_SECONDS: '60'
      M365_IDEMPOTENCY_HOURS: string(idempotencyHours)
      M365_QUEUE_MAX_ATTEMPTS: string(queueMaxAttempts)
      M365_QUEUE_RETRY_BASE_SECONDS: string(queueRetryBaseSeconds)
      M365_QUEUE_MAX_DELAY_SECONDS: string(queueMaxDelaySeconds)
      M365_ATTACHMENT_CONTAINERS: attachmentContainerName
      M365_MESSAGE_MAX_MB: string(messageMaxMb)
    }
  }
  dependsOn: [rbac]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output SEND_URL string = 'https://${function.outputs.defaultHostName}/api/send'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output OUTBOX_QUEUE_URL string = '${storage.outputs.queueEndpoint}${queueName}'
output OUTBOX_QUEUE_NAME string = queueName
output COMPLETION_QUEUE_NAME string = completionQueueName
output SEND_TABLE_NAME string = sendTableName
output AZURE_KEY_VAULT_NAME string = useVault ? vaultName : ''
output AZURE_KEY_VAULT_URI string = useVault ? keyVaultAccess.outputs.uri : ''
// Read by infra/hooks/postprovision.sh, which deletes the vault-wide grant once it is per secret.
output KEY_VAULT_WIDE_GRANT_ID string = useVault ? keyVaultAccess.outputs.vaultWideGrantId : ''
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
// What the app registration's federated credential must say (docs/deploy.md gives the az command).
output M365_CREDENTIAL string = credentialType
output FEDERATED_ISSUER string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
output FEDERATED_SUBJECT string = identity.outputs.principalId
output FEDERATED_AUDIENCE string = tokenExchangeAudience
output M365_APP_CLIENT_ID string = createAppRegistration && !useVault ? appRegistration.outputs.appId : m365ClientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsId
output AZURE_WORKBOOK_ID string = dashboard.outputs.workbookId
output M365_API_AUDIENCE string = tokenAudience
