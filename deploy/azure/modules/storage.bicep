// Blob Storage: attachments (sealed by the application before upload), database backups and
// audit-chain anchors. Private endpoint only; the backups and anchors containers are
// immutable (time-based retention), so neither a stolen key nor an operator can rewrite them.
param location string
param namePrefix string
@maxLength(24)
param accountName string
param endpointsSubnetId string
param dnsZoneId string
param workspaceId string
param appIdentityPrincipalId string
@description('Days a backup blob cannot be changed or deleted.')
param backupImmutabilityDays int
@description('Days an audit anchor cannot be changed or deleted (HIPAA: six years).')
param anchorImmutabilityDays int = 2192
@description('Shared-key (connection string) access, needed while the attachment store authenticates with a connection string.')
param allowSharedKeyAccess bool = true
param tags object

var roleBlobContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // Shared-key access stays on while the attachment store authenticates with a connection
  // string (HELPDESK_AZURE_STORAGE_CONNECTION_STRING); turn it off once it uses the managed
  // identity. Platform keys encrypt at rest (with infrastructure encryption); above that,
  // every attachment is AES-256-GCM sealed by the application before upload.
  // checkov:skip=CKV_AZURE_43: the name is main.bicep's storageAccountName: take(toLower(prefix + 'st' + uniqueString(resourceGroup().id)), 24) without dashes, 3-24 lower-case letters and digits; checkov cannot evaluate a parameter
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  // Geo-zone-redundant in every environment: attachments and backups are the records.
  sku: { name: 'Standard_GZRS' }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: allowSharedKeyAccess
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true
    changeFeed: { enabled: true }
    deleteRetentionPolicy: { enabled: true, days: 30 }
    containerDeleteRetentionPolicy: { enabled: true, days: 30 }
  }
}

resource attachments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'attachments'
  properties: { publicAccess: 'None' }
}

resource backups 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'backups'
  properties: { publicAccess: 'None' }
}

resource backupsPolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: backups
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: backupImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource anchors 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'audit-anchors'
  properties: { publicAccess: 'None' }
}

resource anchorsPolicy 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: anchors
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: anchorImmutabilityDays
    allowProtectedAppendWrites: true
  }
}

resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: account
  name: guid(account.id, appIdentityPrincipalId, roleBlobContributor)
  properties: {
    principalId: appIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleBlobContributor)
  }
}

module endpoint 'privateendpoint.bicep' = {
  name: '${namePrefix}-blob-pe'
  params: {
    name: '${namePrefix}-blob-pe'
    location: location
    subnetId: endpointsSubnetId
    targetId: account.id
    groupId: 'blob'
    dnsZoneId: dnsZoneId
    tags: tags
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: blobService
  name: 'audit'
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageRead', enabled: true }
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
