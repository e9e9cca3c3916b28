// Help desk on Azure: one resource group per environment (dev, prod).
//
//   internet -> Application Gateway + WAF (public IP, TLS) -> API container app (internal)
//   API + worker replicas -> PostgreSQL Flexible Server (private, TLS), Blob Storage and
//   Key Vault and Redis (private endpoints), Temporal (Cloud, or self-hosted in the
//   environment), clamd; logs and telemetry -> Log Analytics / Application Insights.
//
// Deploy:  az deployment group create -g <rg> -f deploy/azure/main.bicep \
//            -p deploy/azure/params/<env>.bicepparam
// See deploy/azure/README.md for what each resource is for and how to roll out a release.
targetScope = 'resourceGroup'

@allowed(['dev', 'prod'])
param environmentName string
param location string = resourceGroup().location
@maxLength(14)
@description('Prefix of every resource name (lower case letters, digits, dashes).')
param namePrefix string = 'helpdesk-${environmentName}'
@description('Container image of the application (Dockerfile at the repository root), e.g. myregistry.azurecr.io/helpdesk:1.4.2')
param image string
@description('Registry the image is pulled from with the managed identity (grant it AcrPull); empty for a public image.')
param registryServer string = ''
@description('Host name users reach the help desk at, e.g. helpdesk.example.org')
param publicHostname string
@description('Key Vault secret id (versionless) of the TLS certificate for publicHostname.')
param tlsCertificateSecretId string
@description('Networks allowed to call administrative routes (HELPDESK_ADMIN_IP_ALLOWLIST).')
param adminAllowedCidrs array
param zoneRedundant bool = environmentName == 'prod'
@description('Address space of the virtual network and its four subnets (see modules/network.bicep).')
param addressPrefix string = '10.40.0.0/16'
param appGwPrefix string = '10.40.0.0/24'
param appsPrefix string = '10.40.2.0/23'
param postgresPrefix string = '10.40.4.0/24'
param endpointsPrefix string = '10.40.5.0/24'

// --- application replicas ----------------------------------------------------------------
param apiMinReplicas int = 2
param apiMaxReplicas int = 10
param apiCpu string = '1.0'
param apiMemory string = '2Gi'
@description('Concurrent HTTP requests per API replica before another one is added.')
param apiConcurrentRequests int = 50
param workerMinReplicas int = 2
param workerMaxReplicas int = 10
param workerCpu string = '1.0'
param workerMemory string = '2Gi'
@description('Average CPU utilisation (%) past which API and worker replicas are added.')
param cpuScalePercent int = 70
param clamavImage string = 'docker.io/clamav/clamav:1.4'

// --- database ----------------------------------------------------------------------------
param postgresSkuName string = 'Standard_D2ds_v5'
param postgresSkuTier string = 'GeneralPurpose'
param postgresStorageSizeGB int = 128
param postgresHighAvailability bool = environmentName == 'prod'
param postgresGeoRedundantBackup bool = environmentName == 'prod'
param postgresBackupRetentionDays int = 35
param postgresAdministratorLogin string = 'helpdesk'
@secure()
param postgresAdministratorPassword string

// --- storage, cache, monitoring ----------------------------------------------------------
param backupImmutabilityDays int = 35
param redisSkuName string = environmentName == 'prod' ? 'Standard' : 'Basic'
param redisCapacity int = environmentName == 'prod' ? 1 : 0
param logRetentionDays int = environmentName == 'prod' ? 365 : 30
param gatewayMinCapacity int = environmentName == 'prod' ? 2 : 1
param gatewayMaxCapacity int = 10

// --- Temporal ----------------------------------------------------------------------------
@allowed(['cloud', 'selfhosted'])
param temporalMode string = 'cloud'
@description('Temporal Cloud: <namespace>.<account>.tmprl.cloud:7233 (mTLS) or <region>.<cloud>.api.temporal.io:7233 (API key).')
param temporalAddress string = ''
param temporalNamespace string = 'default'
@secure()
@description('Temporal Cloud API key (or leave empty and give the mTLS client certificate).')
param temporalApiKey string = ''
@secure()
@description('Temporal Cloud mTLS client certificate, PEM.')
param temporalClientCertPem string = ''
@secure()
@description('Private key of the Temporal Cloud client certificate, PEM.')
param temporalClientKeyPem string = ''
param temporalServerImage string = 'docker.io/temporalio/auto-setup:1.25.2'
param temporalUiImage string = 'docker.io/temporalio/ui:2.31.2'

// --- application secrets (same in API, worker and migrate job) ---------------------------
@secure()
param jwtSecret string
@secure()
param blindIndexKey string
@secure()
param auditKey string
@secure()
@description('Base64 of 32 random bytes.')
param payloadCodecKey string
@secure()
@description('At least 32 random characters: signs every workflow command (API and worker only).')
param commandKey string
@secure()
@description('Only while moving from a local KEK: the old HELPDESK_KEK, so data keys it wrapped still open.')
param legacyKek string = ''
param emailBackend string = 'sendgrid'
param emailFrom string = 'helpdesk@${publicHostname}'
@secure()
param sendgridApiKey string = ''

@description('Set by the deployment; the first KEK version and the secrets expire relative to it.')
param deploymentTime string = utcNow()

var tags = {
  application: 'helpdesk'
  environment: environmentName
  dataClassification: 'phi'
}
var selfHosted = temporalMode == 'selfhosted'
var temporalMtls = !selfHosted && !empty(temporalClientCertPem)
var kekName = 'helpdesk-kek'
var storageAccountName = take(toLower(replace('${namePrefix}st${uniqueString(resourceGroup().id)}', '-', '')), 24)
var redisName = '${namePrefix}-redis'
var publicBaseUrl = 'https://${publicHostname}'

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    location: location
    namePrefix: namePrefix
    addressPrefix: addressPrefix
    appGwPrefix: appGwPrefix
    appsPrefix: appsPrefix
    postgresPrefix: postgresPrefix
    endpointsPrefix: endpointsPrefix
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    namePrefix: namePrefix
    retentionDays: logRetentionDays
    tags: tags
  }
}

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-app-id'
  location: location
  tags: tags
}

resource gatewayIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-agw-id'
  location: location
  tags: tags
}

module vaultDns 'modules/privatedns.bicep' = {
  name: 'dns-vault'
  params: {
    zoneName: 'privatelink.vaultcore.azure.net'
    vnetId: network.outputs.vnetId
    tags: tags
  }
}

module blobDns 'modules/privatedns.bicep' = {
  name: 'dns-blob'
  params: {
    zoneName: 'privatelink.blob.${environment().suffixes.storage}'
    vnetId: network.outputs.vnetId
    tags: tags
  }
}

module redisDns 'modules/privatedns.bicep' = {
  name: 'dns-redis'
  params: {
    zoneName: 'privatelink.redis.cache.windows.net'
    vnetId: network.outputs.vnetId
    tags: tags
  }
}

module postgresDns 'modules/privatedns.bicep' = {
  name: 'dns-postgres'
  params: {
    zoneName: '${namePrefix}.private.postgres.database.azure.com'
    vnetId: network.outputs.vnetId
    tags: tags
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    namePrefix: namePrefix
    subnetId: network.outputs.postgresSubnetId
    dnsZoneId: postgresDns.outputs.zoneId
    workspaceId: monitoring.outputs.workspaceId
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    highAvailability: postgresHighAvailability
    geoRedundantBackup: postgresGeoRedundantBackup
    backupRetentionDays: postgresBackupRetentionDays
    administratorLogin: postgresAdministratorLogin
    administratorPassword: postgresAdministratorPassword
    databases: concat(['helpdesk'], selfHosted ? ['temporal', 'temporal_visibility'] : [])
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    namePrefix: namePrefix
    accountName: storageAccountName
    endpointsSubnetId: network.outputs.endpointsSubnetId
    dnsZoneId: blobDns.outputs.zoneId
    workspaceId: monitoring.outputs.workspaceId
    appIdentityPrincipalId: appIdentity.properties.principalId
    backupImmutabilityDays: backupImmutabilityDays
    tags: tags
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  params: {
    location: location
    namePrefix: namePrefix
    skuName: redisSkuName
    skuFamily: 'C'
    capacity: redisCapacity
    endpointsSubnetId: network.outputs.endpointsSubnetId
    dnsZoneId: redisDns.outputs.zoneId
    tags: tags
  }
}

resource storageRef 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource redisRef 'Microsoft.Cache/redis@2024-03-01' existing = {
  name: redisName
}

// Secret name -> value; empty values are not stored. Connection strings are built here from
// the resources' keys, so no key passes through a parameter file or a deployment output.
var vaultSecrets = {
  'database-url': 'postgresql+asyncpg://${postgresAdministratorLogin}:${uriComponent(postgresAdministratorPassword)}@${postgres.outputs.fqdn}:5432/helpdesk?ssl=verify-full'
  'postgres-password': postgresAdministratorPassword
  'redis-url': 'rediss://:${uriComponent(redisRef.listKeys().primaryKey)}@${redis.outputs.hostName}:${redis.outputs.sslPort}/0'
  'storage-connection-string': 'DefaultEndpointsProtocol=https;AccountName=${storageAccountName};AccountKey=${storageRef.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  'jwt-secret': jwtSecret
  'blind-index-key': blindIndexKey
  'audit-key': auditKey
  'payload-codec-key': payloadCodecKey
  'command-key': commandKey
  'legacy-kek': legacyKek
  'temporal-api-key': temporalApiKey
  'temporal-client-cert': temporalClientCertPem
  'temporal-client-key': temporalClientKeyPem
  'sendgrid-api-key': sendgridApiKey
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    namePrefix: namePrefix
    tenantId: subscription().tenantId
    endpointsSubnetId: network.outputs.endpointsSubnetId
    dnsZoneId: vaultDns.outputs.zoneId
    workspaceId: monitoring.outputs.workspaceId
    appIdentityPrincipalId: appIdentity.properties.principalId
    gatewayIdentityPrincipalId: gatewayIdentity.properties.principalId
    kekName: kekName
    kekExpiresOn: dateTimeToEpoch(dateTimeAdd(deploymentTime, 'P2Y'))
    secrets: vaultSecrets
    secretsExpireOn: dateTimeToEpoch(dateTimeAdd(deploymentTime, 'P1Y'))
    tags: tags
  }
  dependsOn: [storage, redis]
}

// Settings of helpdesk/settings.py (HELPDESK_*), the same in API, worker and migrate job.
var plainEnv = concat([
  { name: 'HELPDESK_ENVIRONMENT', value: 'production' }
  { name: 'HELPDESK_API_HOST', value: '0.0.0.0' }
  { name: 'HELPDESK_API_PORT', value: '8000' }
  { name: 'HELPDESK_PUBLIC_BASE_URL', value: publicBaseUrl }
  { name: 'HELPDESK_CORS_ORIGINS', value: publicBaseUrl }
  { name: 'HELPDESK_TRUSTED_PROXIES', value: '${network.outputs.appGwPrefix},${network.outputs.appsPrefix}' }
  { name: 'HELPDESK_ADMIN_IP_ALLOWLIST', value: join(adminAllowedCidrs, ',') }
  { name: 'HELPDESK_RUN_WORKER_IN_API', value: 'false' }
  { name: 'HELPDESK_TEMPORAL_DEV_SERVER', value: 'false' }
  { name: 'HELPDESK_TEMPORAL_NAMESPACE', value: selfHosted ? 'default' : temporalNamespace }
  { name: 'HELPDESK_TEMPORAL_TLS', value: selfHosted ? 'false' : 'true' }
  { name: 'HELPDESK_KEK_PROVIDER', value: 'azure-keyvault' }
  { name: 'HELPDESK_AZURE_KEY_VAULT_URL', value: vault.outputs.vaultUri }
  { name: 'HELPDESK_AZURE_KEY_NAME', value: vault.outputs.kekName }
  { name: 'HELPDESK_AZURE_CLIENT_ID', value: appIdentity.properties.clientId }
  { name: 'AZURE_CLIENT_ID', value: appIdentity.properties.clientId }
  { name: 'HELPDESK_ATTACHMENT_STORAGE', value: 'azure' }
  { name: 'HELPDESK_AZURE_STORAGE_CONTAINER', value: 'attachments' }
  { name: 'HELPDESK_CLAMD_ADDRESS', value: '${namePrefix}-clamav:3310' }
  { name: 'HELPDESK_EMAIL_BACKEND', value: emailBackend }
  { name: 'HELPDESK_EMAIL_FROM', value: emailFrom }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: monitoring.outputs.insightsConnectionString }
], selfHosted ? [] : [
  { name: 'HELPDESK_TEMPORAL_ADDRESS', value: temporalAddress }
], temporalMtls ? [
  { name: 'HELPDESK_TEMPORAL_TLS_CLIENT_CERT_FILE', value: '/mnt/temporal-tls/client.pem' }
  { name: 'HELPDESK_TEMPORAL_TLS_CLIENT_KEY_FILE', value: '/mnt/temporal-tls/client.key' }
] : [])

var secretEnv = concat([
  { name: 'HELPDESK_DATABASE_URL', secret: 'database-url' }
  { name: 'HELPDESK_REDIS_URL', secret: 'redis-url' }
  { name: 'HELPDESK_AZURE_STORAGE_CONNECTION_STRING', secret: 'storage-connection-string' }
  { name: 'HELPDESK_JWT_SECRET', secret: 'jwt-secret' }
  { name: 'HELPDESK_BLIND_INDEX_KEY', secret: 'blind-index-key' }
  { name: 'HELPDESK_AUDIT_KEY', secret: 'audit-key' }
  { name: 'HELPDESK_PAYLOAD_CODEC_KEY', secret: 'payload-codec-key' }
  { name: 'HELPDESK_COMMAND_KEY', secret: 'command-key' }
], empty(legacyKek) ? [] : [
  { name: 'HELPDESK_KEK', secret: 'legacy-kek' }
], empty(temporalApiKey) ? [] : [
  { name: 'HELPDESK_TEMPORAL_API_KEY', secret: 'temporal-api-key' }
], empty(sendgridApiKey) ? [] : [
  { name: 'HELPDESK_SENDGRID_API_KEY', secret: 'sendgrid-api-key' }
])

module apps 'modules/containerapps.bicep' = {
  name: 'containerapps'
  params: {
    location: location
    namePrefix: namePrefix
    subnetId: network.outputs.appsSubnetId
    vnetId: network.outputs.vnetId
    workspaceId: monitoring.outputs.workspaceId
    zoneRedundant: zoneRedundant
    identityId: appIdentity.id
    image: image
    registryServer: registryServer
    vaultUri: vault.outputs.vaultUri
    env: plainEnv
    secretEnv: secretEnv
    appGwPrefix: network.outputs.appGwPrefix
    apiMinReplicas: apiMinReplicas
    apiMaxReplicas: apiMaxReplicas
    apiCpu: apiCpu
    apiMemory: apiMemory
    apiConcurrentRequests: apiConcurrentRequests
    workerMinReplicas: workerMinReplicas
    workerMaxReplicas: workerMaxReplicas
    workerCpu: workerCpu
    workerMemory: workerMemory
    cpuScalePercent: cpuScalePercent
    clamavImage: clamavImage
    temporalMtlsFiles: temporalMtls
    temporalSelfHosted: selfHosted
    temporalServerImage: temporalServerImage
    temporalUiImage: temporalUiImage
    postgresHost: postgres.outputs.fqdn
    postgresUser: postgresAdministratorLogin
    publicBaseUrl: publicBaseUrl
    tags: tags
  }
}

module waf 'modules/waf.bicep' = {
  name: 'waf'
  params: {
    location: location
    namePrefix: namePrefix
    subnetId: network.outputs.appGwSubnetId
    zones: zoneRedundant ? ['1', '2', '3'] : []
    identityId: gatewayIdentity.id
    publicHostname: publicHostname
    certificateSecretId: tlsCertificateSecretId
    backendFqdn: apps.outputs.apiFqdn
    minCapacity: gatewayMinCapacity
    maxCapacity: gatewayMaxCapacity
    workspaceId: monitoring.outputs.workspaceId
    tags: tags
  }
  dependsOn: [vault]
}

output publicIpAddress string = waf.outputs.publicIpAddress
output gatewayFqdn string = waf.outputs.publicFqdn
output keyVaultUri string = vault.outputs.vaultUri
output apiAppName string = apps.outputs.apiName
output workerAppName string = apps.outputs.workerName
output migrateJobName string = apps.outputs.migrateJobName
output postgresFqdn string = postgres.outputs.fqdn
output storageAccountName string = storageAccountName
