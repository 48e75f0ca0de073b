// The Function App on the Flex Consumption plan: Python 3.11, HTTPS only, TLS 1.2 (Flex offers
// neither FTP nor remote debugging), one user-assigned identity, identity-based storage (the host's
// own account for AzureWebJobsStorage and the package; the app's data account for M365Storage) and
// Application Insights.
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
@description('The Functions host\'s own account (AzureWebJobsStorage and the deployment package).')
param hostStorageAccountName string
@description('The app\'s data account (M365Storage: outbox, send records, pacing, attachments, completions).')
param storageAccountName string
param deploymentContainerName string
param applicationInsightsConnectionString string
@description('Most instances of each per-function scale group (the HTTP functions share one group; the queue function scales in its own).')
param maximumInstanceCount int = 40
@description('Always-ready instances for the HTTP functions\' group (0: none, scale from zero).')
param alwaysReady int = 0
param instanceMemoryMB int = 2048
param virtualNetworkSubnetId string = ''
@description('Every setting m365send reads (see README); set by main.bicep.')
param appSettings object

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy is offered only in some regions, set zoneRedundant there
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_56: callers authenticate with function keys (Power Automate custom connectors use an API key), App Service Authentication would break them
  // checkov:skip=CKV_AZURE_17: client certificates are not how Power Automate or queue producers authenticate
  // checkov:skip=CKV_AZURE_222: Power Automate's cloud connectors reach the API over the public endpoint (function keys required)
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero, always-ready instances are a cost choice left to the operator
  // checkov:skip=CKV_AZURE_213: App Service health checks do not apply to Flex Consumption instances, which scale to zero
  // checkov:skip=CKV_AZURE_221: public network access is needed for Power Automate's cloud connectors to reach the API
  // checkov:skip=CKV_AZURE_78: Flex Consumption rejects siteConfig.ftpsState (ARM error 51021); it offers no FTP deployment
  // checkov:skip=CKV_AZURE_67: Flex Consumption sites refuse most siteConfig properties; siteConfig keeps only what Microsoft's Flex quickstart sets (minTlsVersion)
  // checkov:skip=CKV_AZURE_18: as CKV_AZURE_67: http20Enabled is not set on a Flex Consumption site
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    // Flex Consumption sites refuse most siteConfig properties (ARM error 51021 names ftpsState among
    // them); Microsoft's Flex quickstart sets only minTlsVersion. FTP and remote debugging are not
    // offered on Flex Consumption at all: deployments go through the deployment container.
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // "http" is the group of every HTTP-triggered function on Flex Consumption; its always-ready
        // instances are billed while idle, the price of a first send without a cold start.
        alwaysReady: alwaysReady > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReady
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, {
      // Identity-based host storage, on the host's own account: no account key or connection string anywhere.
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      AzureWebJobsStorage__blobServiceUri: hostStorage.properties.primaryEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: hostStorage.properties.primaryEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: hostStorage.properties.primaryEndpoints.table
      // The app's data account: the queue trigger's connection ("M365Storage") and what the app reads.
      M365Storage__credential: 'managedidentity'
      M365Storage__clientId: identityClientId
      M365Storage__blobServiceUri: storage.properties.primaryEndpoints.blob
      M365Storage__queueServiceUri: storage.properties.primaryEndpoints.queue
      M365Storage__tableServiceUri: storage.properties.primaryEndpoints.table
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    })
  }

  resource ftp 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scm 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
