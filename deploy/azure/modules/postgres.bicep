// PostgreSQL Flexible Server: private access only (a delegated subnet and a private DNS
// zone, no public endpoint), TLS required (1.2 at least), zone-redundant HA and
// geo-redundant backups in production, connection and checkpoint logs to Log Analytics.
param location string
param namePrefix string
param subnetId string
param dnsZoneId string
param workspaceId string
param skuName string
param skuTier string
param storageSizeGB int
param highAvailability bool
param geoRedundantBackup bool
param backupRetentionDays int
param administratorLogin string
@secure()
param administratorPassword string
@description('Databases to create: the application, and Temporal\'s two when it is self-hosted.')
param databases array
param tags object

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: '${namePrefix}-pg'
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: '16'
    administratorLogin: administratorLogin
    administratorLoginPassword: administratorPassword
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Enabled'
    }
    storage: {
      storageSizeGB: storageSizeGB
      autoGrow: 'Enabled'
    }
    backup: {
      backupRetentionDays: backupRetentionDays
      geoRedundantBackup: geoRedundantBackup ? 'Enabled' : 'Disabled'
    }
    highAvailability: {
      mode: highAvailability ? 'ZoneRedundant' : 'Disabled'
    }
    network: {
      delegatedSubnetResourceId: subnetId
      privateDnsZoneArmResourceId: dnsZoneId
      publicNetworkAccess: 'Disabled'
    }
  }
}

var parameters = {
  require_secure_transport: 'on'
  ssl_min_protocol_version: 'TLSv1.2'
  log_connections: 'on'
  log_disconnections: 'on'
  log_checkpoints: 'on'
  'connection_throttle.enable': 'on'
}

@batchSize(1) // the server accepts one configuration change at a time
resource settings 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = [for item in items(parameters): {
  parent: server
  name: item.key
  properties: {
    value: item.value
    source: 'user-override'
  }
}]

@batchSize(1)
resource dbs 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = [for name in databases: {
  parent: server
  name: name
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [settings]
}]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: server
  name: 'audit'
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

output serverName string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
