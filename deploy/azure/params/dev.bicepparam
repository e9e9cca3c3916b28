// Development environment: one zone, small SKUs, Temporal Cloud with an API key.
// Secrets are read from the deploying shell's environment (a pipeline's secret store),
// never written here.
using '../main.bicep'

param environmentName = 'dev'
param namePrefix = 'helpdesk-dev'
param image = readEnvironmentVariable('HELPDESK_IMAGE', 'helpdeskacr.azurecr.io/helpdesk:dev')
param registryServer = 'helpdeskacr.azurecr.io'
param publicHostname = 'helpdesk-dev.example.org'
param tlsCertificateSecretId = readEnvironmentVariable('HELPDESK_TLS_CERT_SECRET_ID')
param adminAllowedCidrs = ['10.0.0.0/8']

param apiMinReplicas = 1
param apiMaxReplicas = 3
param workerMinReplicas = 1
param workerMaxReplicas = 3
param postgresSkuName = 'Standard_B2s'
param postgresSkuTier = 'Burstable'
param postgresStorageSizeGB = 32
param postgresBackupRetentionDays = 7
param backupImmutabilityDays = 7

param temporalMode = 'cloud'
param temporalAddress = readEnvironmentVariable('HELPDESK_TEMPORAL_ADDRESS', '')
param temporalNamespace = readEnvironmentVariable('HELPDESK_TEMPORAL_NAMESPACE', 'helpdesk-dev')
param temporalApiKey = readEnvironmentVariable('HELPDESK_TEMPORAL_API_KEY', '')

param postgresAdministratorPassword = readEnvironmentVariable('HELPDESK_POSTGRES_PASSWORD')
param jwtSecret = readEnvironmentVariable('HELPDESK_JWT_SECRET')
param blindIndexKey = readEnvironmentVariable('HELPDESK_BLIND_INDEX_KEY')
param auditKey = readEnvironmentVariable('HELPDESK_AUDIT_KEY')
param payloadCodecKey = readEnvironmentVariable('HELPDESK_PAYLOAD_CODEC_KEY')
param commandKey = readEnvironmentVariable('HELPDESK_COMMAND_KEY')
param sendgridApiKey = readEnvironmentVariable('HELPDESK_SENDGRID_API_KEY', '')
