// Container Apps: an internal (VNet-only) environment running
//   api        `helpdesk api`, N replicas, scaled on concurrent HTTP requests and CPU;
//              reachable only from the Application Gateway subnet
//   worker     `helpdesk worker`, M replicas on the same task queue, scaled on CPU
//   migrate    a manual job running `helpdesk migrate` (once per release, before the rest)
//   clamav     clamd with freshclam signatures (TCP 3310, inside the environment only)
//   temporal, temporal-ui  only when Temporal is self-hosted
// Every secret is a Key Vault reference read with the user-assigned managed identity.
param location string
param namePrefix string
param subnetId string
param vnetId string
param workspaceId string
param zoneRedundant bool
param identityId string
param image string
param registryServer string
param vaultUri string
@description('Plain settings: [{name, value}].')
param env array
@description('Settings read from Key Vault secrets: [{name: ENV_NAME, secret: secret-name}].')
param secretEnv array
param appGwPrefix string
param apiMinReplicas int
param apiMaxReplicas int
param apiCpu string
param apiMemory string
param apiConcurrentRequests int
param workerMinReplicas int
param workerMaxReplicas int
param workerCpu string
param workerMemory string
param cpuScalePercent int
param clamavImage string
@description('Mount the Temporal client certificate and key (Key Vault secrets temporal-client-cert, temporal-client-key) at /mnt/temporal-tls.')
param temporalMtlsFiles bool
param temporalSelfHosted bool
param temporalServerImage string
param temporalUiImage string
param postgresHost string
param postgresUser string
param publicBaseUrl string
param tags object

var appSecretNames = [for e in secretEnv: e.secret]
var secretNames = union(appSecretNames, temporalMtlsFiles ? ['temporal-client-cert', 'temporal-client-key'] : [])
var secrets = [for name in secretNames: {
  name: name
  keyVaultUrl: '${vaultUri}secrets/${name}'
  identity: identityId
}]
var secretEnvVars = [for e in secretEnv: {
  name: e.name
  secretRef: e.secret
}]
var registries = empty(registryServer) ? [] : [
  {
    server: registryServer
    identity: identityId
  }
]
var tlsVolumes = temporalMtlsFiles ? [
  {
    name: 'temporal-tls'
    storageType: 'Secret'
    secrets: [
      { secretRef: 'temporal-client-cert', path: 'client.pem' }
      { secretRef: 'temporal-client-key', path: 'client.key' }
    ]
  }
] : []
var tlsMounts = temporalMtlsFiles ? [
  {
    volumeName: 'temporal-tls'
    mountPath: '/mnt/temporal-tls'
  }
] : []
var temporalEnv = temporalSelfHosted ? [
  {
    name: 'HELPDESK_TEMPORAL_ADDRESS'
    value: '${namePrefix}-temporal:7233'
  }
] : []
var appEnv = concat(env, secretEnvVars, temporalEnv)

resource managedEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-cae'
  location: location
  tags: tags
  properties: {
    vnetConfiguration: {
      infrastructureSubnetId: subnetId
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    zoneRedundant: zoneRedundant
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: managedEnv
  name: 'logs'
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

// Apps of an internal environment resolve inside the VNet through this zone.
module environmentDns 'privatedns.bicep' = {
  name: '${namePrefix}-cae-dns'
  params: {
    zoneName: managedEnv.properties.defaultDomain
    vnetId: vnetId
    wildcardIp: managedEnv.properties.staticIp
    tags: tags
  }
}

resource api 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${namePrefix}-api'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
      ingress: {
        external: false
        targetPort: 8000
        transport: 'http'
        allowInsecure: false
        ipSecurityRestrictions: [
          {
            name: 'application-gateway-only'
            description: 'Only the WAF may call the API'
            ipAddressRange: appGwPrefix
            action: 'Allow'
          }
        ]
      }
    }
    template: {
      containers: [
        {
          name: 'api'
          image: image
          args: ['api']
          env: appEnv
          resources: {
            cpu: json(apiCpu)
            memory: apiMemory
          }
          volumeMounts: tlsMounts
          probes: [
            {
              type: 'Liveness'
              httpGet: { path: '/healthz', port: 8000 }
              periodSeconds: 10
            }
            {
              type: 'Readiness'
              httpGet: { path: '/readyz', port: 8000 }
              periodSeconds: 5
            }
          ]
        }
      ]
      volumes: tlsVolumes
      scale: {
        minReplicas: apiMinReplicas
        maxReplicas: apiMaxReplicas
        rules: [
          {
            name: 'http-load'
            http: {
              metadata: { concurrentRequests: string(apiConcurrentRequests) }
            }
          }
          {
            name: 'cpu'
            custom: {
              type: 'cpu'
              metadata: { type: 'Utilization', value: string(cpuScalePercent) }
            }
          }
        ]
      }
    }
  }
  dependsOn: [clamav, temporal]
}

resource worker 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${namePrefix}-worker'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
    }
    template: {
      containers: [
        {
          name: 'worker'
          image: image
          args: ['worker']
          env: appEnv
          resources: {
            cpu: json(workerCpu)
            memory: workerMemory
          }
          volumeMounts: tlsMounts
        }
      ]
      volumes: tlsVolumes
      scale: {
        minReplicas: workerMinReplicas
        maxReplicas: workerMaxReplicas
        rules: [
          {
            name: 'cpu'
            custom: {
              type: 'cpu'
              metadata: { type: 'Utilization', value: string(cpuScalePercent) }
            }
          }
        ]
      }
    }
  }
  dependsOn: [clamav, temporal]
}

resource migrate 'Microsoft.App/jobs@2024-03-01' = {
  name: '${namePrefix}-migrate'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: 1800
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      secrets: secrets
      registries: registries
    }
    template: {
      containers: [
        {
          name: 'migrate'
          image: image
          args: ['migrate']
          env: appEnv
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
        }
      ]
    }
  }
}

resource clamav 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${namePrefix}-clamav'
  location: location
  tags: tags
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: false
        transport: 'tcp'
        targetPort: 3310
        exposedPort: 3310
      }
    }
    template: {
      containers: [
        {
          name: 'clamav'
          image: clamavImage
          resources: {
            cpu: json('1.0')
            memory: '4Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 3
      }
    }
  }
}

// Self-hosted Temporal (temporalMode = 'selfhosted'): the server on the same PostgreSQL
// server (databases temporal and temporal_visibility), and its UI, both internal only.
resource temporal 'Microsoft.App/containerApps@2024-03-01' = if (temporalSelfHosted) {
  name: '${namePrefix}-temporal'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: [
        {
          name: 'postgres-password'
          keyVaultUrl: '${vaultUri}secrets/postgres-password'
          identity: identityId
        }
      ]
      ingress: {
        external: false
        transport: 'tcp'
        targetPort: 7233
        exposedPort: 7233
      }
    }
    template: {
      containers: [
        {
          name: 'temporal'
          image: temporalServerImage
          env: [
            { name: 'DB', value: 'postgres12' }
            { name: 'DB_PORT', value: '5432' }
            { name: 'POSTGRES_SEEDS', value: postgresHost }
            { name: 'POSTGRES_USER', value: postgresUser }
            { name: 'POSTGRES_PWD', secretRef: 'postgres-password' }
            { name: 'DBNAME', value: 'temporal' }
            { name: 'VISIBILITY_DBNAME', value: 'temporal_visibility' }
            { name: 'SQL_TLS_ENABLED', value: 'true' }
            { name: 'SQL_HOST_VERIFICATION', value: 'true' }
            { name: 'SQL_HOST_NAME', value: postgresHost }
          ]
          resources: {
            cpu: json('2.0')
            memory: '4Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

resource temporalUi 'Microsoft.App/containerApps@2024-03-01' = if (temporalSelfHosted) {
  name: '${namePrefix}-temporal-ui'
  location: location
  tags: tags
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: false
        targetPort: 8080
        transport: 'http'
        allowInsecure: false
      }
    }
    template: {
      containers: [
        {
          name: 'temporal-ui'
          image: temporalUiImage
          env: [
            { name: 'TEMPORAL_ADDRESS', value: '${namePrefix}-temporal:7233' }
            { name: 'TEMPORAL_CODEC_ENDPOINT', value: '${publicBaseUrl}/api/v1/temporal-codec' }
          ]
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

output environmentName string = managedEnv.name
output defaultDomain string = managedEnv.properties.defaultDomain
output apiFqdn string = api.properties.configuration.ingress.fqdn
output apiName string = api.name
output workerName string = worker.name
output migrateJobName string = migrate.name
