// A private DNS zone linked to the virtual network (private endpoints, PostgreSQL, and the
// internal Container Apps environment, whose apps resolve through a wildcard record).
param zoneName string
param vnetId string
@description('When set, a wildcard A record (*) and an apex record pointing at this address.')
param wildcardIp string = ''
param tags object

resource zone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: zoneName
  location: 'global'
  tags: tags
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: zone
  name: 'vnet-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnetId }
  }
}

resource wildcard 'Microsoft.Network/privateDnsZones/A@2020-06-01' = if (!empty(wildcardIp)) {
  parent: zone
  name: '*'
  properties: {
    ttl: 300
    aRecords: [{ ipv4Address: wildcardIp }]
  }
}

resource apex 'Microsoft.Network/privateDnsZones/A@2020-06-01' = if (!empty(wildcardIp)) {
  parent: zone
  name: '@'
  properties: {
    ttl: 300
    aRecords: [{ ipv4Address: wildcardIp }]
  }
}

output zoneId string = zone.id
