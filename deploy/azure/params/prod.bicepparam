// Production: zone-redundant everything, HA PostgreSQL with geo-redundant backups,
// Temporal Cloud over mTLS. Secrets are read from the deploying shell's environment (a
// pipeline's secret store), never written here.
using '../main.bicep'

param environmentName = 'prod'
param namePrefix = 'helpdesk-pr'
param image = readEnvironmentVariable('HELPDESK_IMAGE')
param registryServer = 'helpdeskacr.azurecr.io'
param publicHostname = 'helpdesk.example.org'
param tlsCertificateSecretId = readEnvironmentVariable('HELPDESK_TLS_CERT_SECRET_ID')
param adminAllowedCidrs = ['10.10.0.0/16']
param zoneRedundant = true

param apiMinReplicas = 3
param apiMaxReplicas = 20
param workerMinReplicas = 3
param workerMaxReplicas = 20
param apiCpu = '2.0'
param apiMemory = '4Gi'
param workerCpu = '2.0'
param workerMemory = '4Gi'
param postgresSkuName = 'Standard_D4ds_v5'
param postgresSkuTier = 'GeneralPurpose'
param postgresStorageSizeGB = 512
param postgresHighAvailability = true
param postgresGeoRedundantBackup = true
param postgresBackupRetentionDays = 35
param backupImmutabilityDays = 35

param temporalMode = 'cloud'
param temporalAddress = readEnvironmentVariable('HELPDESK_TEMPORAL_ADDRESS')
param temporalNamespace = readEnvironmentVariable('HELPDESK_TEMPORAL_NAMESPACE')
param temporalClientCertPem = readEnvironmentVariable('HELPDESK_TEMPORAL_CLIENT_CERT_PEM')
param temporalClientKeyPem = readEnvironmentVariable('HELPDESK_TEMPORAL_CLIENT_KEY_PEM')

param postgresAdministratorPassword = readEnvironmentVariable('HELPDESK_POSTGRES_PASSWORD')
param jwtSecret = readEnvironmentVariable('HELPDESK_JWT_SECRET')
param blindIndexKey = readEnvironmentVariable('HELPDESK_BLIND_INDEX_KEY')
param auditKey = readEnvironmentVariable('HELPDESK_AUDIT_KEY')
param payloadCodecKey = readEnvironmentVariable('HELPDESK_PAYLOAD_CODEC_KEY')
param commandKey = readEnvironmentVariable('HELPDESK_COMMAND_KEY')
param sendgridApiKey = readEnvironmentVariable('HELPDESK_SENDGRID_API_KEY')
