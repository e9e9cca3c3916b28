// Azure Cache for Redis: Socket.IO fan-out between API replicas and workers
// (HELPDESK_REDIS_URL). TLS only, private endpoint, no public network. Carries event ids,
// never PHI.
param location string
param namePrefix string
param skuName string
param skuFamily string
param capacity int
param endpointsSubnetId string
param dnsZoneId string
param tags object

resource cache 'Microsoft.Cache/redis@2024-03-01' = {
  name: '${namePrefix}-redis'
  location: location
  tags: tags
  properties: {
    sku: {
      name: skuName
      family: skuFamily
      capacity: capacity
    }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Disabled'
    redisVersion: '6'
  }
}

module endpoint 'privateendpoint.bicep' = {
  name: '${namePrefix}-redis-pe'
  params: {
    name: '${namePrefix}-redis-pe'
    location: location
    subnetId: endpointsSubnetId
    targetId: cache.id
    groupId: 'redisCache'
    dnsZoneId: dnsZoneId
    tags: tags
  }
}

output name string = cache.name
output hostName string = cache.properties.hostName
output sslPort int = cache.properties.sslPort
