// Key Vault: the key-encryption key (an RSA-HSM key that never leaves the vault; the
// application wraps data keys with its public half and asks the vault to unwrap them) and
// every other secret of the application. RBAC only, no public network, purge protection.
param location string
param namePrefix string
param tenantId string
param endpointsSubnetId string
param dnsZoneId string
param workspaceId string
param appIdentityPrincipalId string
param gatewayIdentityPrincipalId string
param kekName string
param kekKeySize int = 3072
@description('Expiry of the first key version, epoch seconds; later versions come from the rotation policy.')
param kekExpiresOn int
@description('Secrets to store: name -> value (values come from secure parameters).')
@secure()
param secrets object
@description('Expiry of the secrets, epoch seconds: a reminder to rotate them (Event Grid near-expiry event).')
param secretsExpireOn int
param tags object

var roleCryptoUser = '12338af0-0e69-4776-bea7-57ae8d297424' // Key Vault Crypto User
var roleSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: '${namePrefix}-kv'
  location: location
  tags: tags
  properties: {
    tenantId: tenantId
    sku: {
      family: 'A'
      name: 'premium' // HSM-backed keys
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
  }
}

resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: kekName
  tags: tags
  properties: {
    kty: 'RSA-HSM'
    keySize: kekKeySize
    keyOps: ['wrapKey', 'unwrapKey']
    attributes: {
      enabled: true
      exportable: false
      exp: kekExpiresOn
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P2Y'
      }
      lifetimeActions: [
        {
          trigger: { timeAfterCreate: 'P1Y' }
          action: { type: 'rotate' }
        }
        {
          trigger: { timeBeforeExpiry: 'P30D' }
          action: { type: 'notify' }
        }
      ]
    }
  }
}

resource secretItems 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for item in items(secrets): if (!empty(item.value)) {
  parent: vault
  name: item.key
  tags: tags
  properties: {
    value: item.value
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: secretsExpireOn
    }
  }
}]

// The application's identity: wrap/unwrap (and read the public half) of the KEK only.
resource kekRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: kek
  name: guid(kek.id, appIdentityPrincipalId, roleCryptoUser)
  properties: {
    principalId: appIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleCryptoUser)
  }
}

// The application's identity reads the secrets (Container Apps Key Vault references).
resource secretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, appIdentityPrincipalId, roleSecretsUser)
  properties: {
    principalId: appIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleSecretsUser)
  }
}

// The gateway reads its TLS certificate (a Key Vault certificate is read as a secret).
resource gatewayRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, gatewayIdentityPrincipalId, roleSecretsUser)
  properties: {
    principalId: gatewayIdentityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleSecretsUser)
  }
}

module endpoint 'privateendpoint.bicep' = {
  name: '${namePrefix}-kv-pe'
  params: {
    name: '${namePrefix}-kv-pe'
    location: location
    subnetId: endpointsSubnetId
    targetId: vault.id
    groupId: 'vault'
    dnsZoneId: dnsZoneId
    tags: tags
  }
}

// Every key operation (who unwrapped which key version, when) is audited.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: vault
  name: 'audit'
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output vaultName string = vault.name
output vaultUri string = vault.properties.vaultUri
output kekName string = kek.name
