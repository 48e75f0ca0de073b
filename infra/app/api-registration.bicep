// Optional (main.bicep's apiAppRoles with createAppRegistration): the app registration of m365send's
// own HTTP API, so callers can present Entra ID tokens instead of function keys. It defines the app
// roles the sender policy (M365_SENDER_POLICY) names, issues v2.0 tokens, and its service principal
// requires assignment, so only apps and users granted a role get a token at all.
// https://learn.microsoft.com/entra/identity-platform/howto-add-app-roles-in-apps
// https://learn.microsoft.com/graph/templates/bicep/reference/applications
extension 'br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0'

param uniqueName string
param displayName string
@description('The API\'s application ID URI, the audience of its tokens (M365_API_AUDIENCE).')
param identifierUri string
@description('App roles callers can be granted, e.g. ["Mail.Send.HR"]; each allowed to apps and users.')
param appRoles array

resource api 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  identifierUris: [identifierUri]
  api: {
    // v2.0 tokens: issuer https://login.microsoftonline.com/{tenant}/v2.0, audience the client id.
    requestedAccessTokenVersion: 2
    // The delegated scope a Power Automate connection (a maker signing in) asks for.
    oauth2PermissionScopes: [
      {
        id: guid(uniqueName, 'user_impersonation')
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Send email through m365send'
        adminConsentDescription: 'Lets the app send email through m365send as the signed-in user is allowed to.'
        userConsentDisplayName: 'Send email through m365send'
        userConsentDescription: 'Lets the app send email through m365send as you are allowed to.'
      }
    ]
  }
  appRoles: [
    for role in appRoles: {
      id: guid(uniqueName, role)
      value: role
      displayName: role
      description: 'Callers with this role send as the senders the m365send sender policy gives ${role}.'
      allowedMemberTypes: ['Application', 'User']
      isEnabled: true
    }
  ]
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: api.appId
  // Only callers assigned a role get tokens for the API.
  appRoleAssignmentRequired: true
}

output appId string = api.appId
output identifierUri string = identifierUri
