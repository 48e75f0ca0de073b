// Optional (main.bicep's createAppRegistration, off by default: the deployer then needs rights in
// Entra ID, e.g. Application Administrator and Privileged Role Administrator for the admin consent):
// the app registration that sends mail, its federated identity credential trusting the Function
// App's managed identity, its service principal, and Graph's application permissions granted to it.
// With it, `azd up` alone gives a working sender with no secret anywhere. Without it, docs/deploy.md
// gives the same steps as `az` commands. Microsoft Graph Bicep extension, v1.0 types:
// https://learn.microsoft.com/graph/templates/bicep/whats-new (resource reference:
// https://learn.microsoft.com/graph/templates/bicep/reference/applications)
extension 'br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0'

@description('The app registration\'s unique name in the tenant (Bicep\'s key for it) and display name.')
param uniqueName string
param displayName string
@description('Principal (object) id of the managed identity whose token is the app\'s credential.')
param identityPrincipalId string
@description('The token exchange audience of this cloud (api://AzureADTokenExchange in the public cloud).')
param tokenExchangeAudience string
@description('Also grant Mail.ReadWrite: messages over about 3 MB, and verified delivery, go through drafts.')
param mailReadWrite bool = true

// Microsoft Graph's own service principal, found by its well-known application id.
resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: '00000003-0000-0000-c000-000000000000'
}

var roles = mailReadWrite ? ['Mail.Send', 'Mail.ReadWrite'] : ['Mail.Send']
// Graph's app roles by value, so no role id is written here.
var graphRoles = graph.appRoles

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'

  // The trust Microsoft documents for a managed identity as an app's credential: the tenant's v2.0
  // issuer, the identity's principal id as subject, the token exchange audience.
  resource managedIdentityTrust 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/function-managed-identity'
    description: 'The m365send Function App\'s user-assigned managed identity'
    issuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
    subject: identityPrincipalId
    audiences: [tokenExchangeAudience]
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

// Application permissions with admin consent: an app role assignment on Graph's service principal.
resource grants 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in roles: {
    principalId: servicePrincipal.id
    resourceId: graph.id
    appRoleId: filter(graphRoles, candidate => candidate.value == role)[0].id
  }
]

output appId string = app.appId
output servicePrincipalId string = servicePrincipal.id
