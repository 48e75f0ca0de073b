// What an operator watches in Azure: an Azure Monitor workbook over the app's own logs, metrics and
// spans in the Log Analytics workspace, and log alert rules with an action group that mails
// alertEmail (no action group, and alerts without actions, when it is empty). tests/test_dashboard.py
// checks that every query names only log messages, properties, metrics, dimensions and spans the app
// emits. Workbook: https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-automate ;
// log alerts: https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
param location string
param tags object = {}
param logAnalyticsId string
@description('Where the alerts go (an email address); empty: the rules exist but notify no one.')
param alertEmail string = ''
@description('Dead letters in one hour that raise an alert.')
param deadLetterThreshold int = 10
@description('Percent of sends failing for a reason of the service\'s own (not the caller\'s) that raises an alert.')
param failureRatioPercent int = 5
param resourceToken string

// Reasons (problem types) that are the service's, not a caller's mistake: the failure ratio's numerator.
var serviceReasons = '"internal", "configuration", "credential", "dependency-unavailable", "outcome-unknown", "record-not-written", "send-as-denied", "mailbox-not-found", "drafts-denied", "graph-rejected"'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'm365send-workbook', resourceToken)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'm365send'
    category: 'workbook'
    sourceId: logAnalyticsId
    serializedData: loadTextContent('workbook.json')
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-m365send-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'm365send'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = {
  actionGroups: empty(alertEmail) ? [] : [actionGroup.id]
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'm365send-poison-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'm365send: queue messages moved to the poison queue'
    description: 'The host gave up on a queue message after maxDequeueCount failures: m365send poison list shows it, poison replay sends it again.'
    severity: 1
    enabled: true
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    scopes: [logAnalyticsId]
    criteria: {
      allOf: [
        {
          query: '''
AppTraces
| where Message == "queue message moved to the poison queue"
'''
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource deadLetterAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'm365send-dead-letters-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'm365send: dead letters in the last hour'
    description: 'More queue messages than the threshold were set aside with a reason: m365send deadletters list.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    scopes: [logAnalyticsId]
    criteria: {
      allOf: [
        {
          query: '''
AppTraces
| where Message startswith "queue message dead-lettered"
'''
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: deadLetterThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource failureRatioAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'm365send-failure-ratio-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'm365send: share of sends failing for the service\'s own reasons'
    description: 'Failures of the service (credential, dependencies, Graph refusing the app) against all sends, in percent.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    scopes: [logAnalyticsId]
    criteria: {
      allOf: [
        {
          query: 'AppMetrics\n| where Name in ("m365send.sends", "m365send.failures")\n| summarize accepted = sumif(Sum, Name == "m365send.sends"), failed = sumif(Sum, Name == "m365send.failures" and tostring(Properties.reason) in (${serviceReasons}))\n| extend failed_percent = iff(accepted + failed == 0, 0.0, 100.0 * failed / (accepted + failed))'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failed_percent'
          operator: 'GreaterThan'
          threshold: failureRatioPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource credentialExpiryAlert 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: 'm365send-credential-expiry-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'm365send: the client secret or certificate expires within 30 days'
    description: 'Rotate it (docs/deploy.md, step 4b), or move to the federated credential, which has nothing to expire.'
    severity: 2
    enabled: true
    evaluationFrequency: 'PT6H'
    windowSize: 'PT6H'
    scopes: [logAnalyticsId]
    criteria: {
      allOf: [
        {
          query: '''
AppTraces
| where Message == "fetched a Graph token from Entra ID"
| where toint(Properties.credential_days_left) < 30
'''
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

output workbookId string = workbook.id
