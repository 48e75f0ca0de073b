// Optional private networking: a VNet whose app subnet the Function App integrates with, and
// private endpoints (with private DNS zones) for both storage accounts and Key Vault.
// The app subnet is delegated to Microsoft.App/environments, which needs the Microsoft.App resource
// provider registered in the subscription; infra/hooks/preprovision.sh registers it (Bicep cannot).
param name string
param location string
param tags object = {}
param hostStorageAccountId string
param storageAccountId string
@description('The vault\'s id; empty in the federated credential mode, which has no vault.')
param keyVaultId string = ''

var zoneNames = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  vault: 'privatelink.vaultcore.azure.net'
}
var zoneKeys = empty(keyVaultId) ? ['blob', 'queue', 'table'] : ['blob', 'queue', 'table', 'vault']
var storageEndpoints = [
  { name: 'blob', group: 'blob', zone: 0, targetId: storageAccountId }
  { name: 'queue', group: 'queue', zone: 1, targetId: storageAccountId }
  { name: 'table', group: 'table', zone: 2, targetId: storageAccountId }
  { name: 'host-blob', group: 'blob', zone: 0, targetId: hostStorageAccountId }
  { name: 'host-queue', group: 'queue', zone: 1, targetId: hostStorageAccountId }
  { name: 'host-table', group: 'table', zone: 2, targetId: hostStorageAccountId }
]
var endpoints = empty(keyVaultId) ? storageEndpoints : concat(storageEndpoints, [
  { name: 'vault', group: 'vault', zone: 3, targetId: keyVaultId }
])

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: ['10.0.0.0/16']
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: '10.0.1.0/24'
          delegations: [
            {
              name: 'flex'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: '10.0.2.0/24'
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for key in zoneKeys: {
  name: zoneNames[key]
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (key, i) in zoneKeys: {
  parent: zones[i]
  name: '${name}-link'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-01-01' = [for endpoint in endpoints: {
  name: 'pe-${endpoint.name}-${name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: vnet.properties.subnets[1].id
    }
    privateLinkServiceConnections: [
      {
        name: endpoint.name
        properties: {
          privateLinkServiceId: endpoint.targetId
          groupIds: [endpoint.group]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [for (endpoint, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.name
        properties: {
          privateDnsZoneId: zones[endpoint.zone].id
        }
      }
    ]
  }
}]

output appSubnetId string = vnet.properties.subnets[0].id
