// Virtual network: one subnet per tier, each behind its own NSG.
//   appgw      Application Gateway (WAF): the only thing reachable from the internet
//   apps       Container Apps environment (API, worker, migrate job, clamd, Temporal)
//   postgres   PostgreSQL Flexible Server, private access (delegated subnet)
//   endpoints  private endpoints of Key Vault, Blob Storage and Redis
param location string
param namePrefix string
param addressPrefix string = '10.40.0.0/16'
param appGwPrefix string = '10.40.0.0/24'
@description('At least /27 for a workload-profiles Container Apps environment.')
param appsPrefix string = '10.40.2.0/23'
param postgresPrefix string = '10.40.4.0/24'
param endpointsPrefix string = '10.40.5.0/24'
param tags object

var subnets = {
  appgw: appGwPrefix
  apps: appsPrefix
  postgres: postgresPrefix
  endpoints: endpointsPrefix
}

resource nsgAppGw 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${namePrefix}-nsg-appgw'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-https-in'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.appgw
          destinationPortRanges: ['443', '80']
        }
      }
      {
        // Required by Application Gateway v2 (health of its own instances).
        name: 'allow-gateway-manager'
        properties: {
          priority: 110
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: 'GatewayManager'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '65200-65535'
        }
      }
      {
        name: 'allow-azure-load-balancer'
        properties: {
          priority: 120
          direction: 'Inbound'
          access: 'Allow'
          protocol: '*'
          sourceAddressPrefix: 'AzureLoadBalancer'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource nsgApps 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${namePrefix}-nsg-apps'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-appgw-to-apps'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: subnets.appgw
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.apps
          destinationPortRanges: ['443', '80']
        }
      }
      {
        name: 'allow-apps-internal'
        properties: {
          priority: 110
          direction: 'Inbound'
          access: 'Allow'
          protocol: '*'
          sourceAddressPrefix: subnets.apps
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.apps
          destinationPortRange: '*'
        }
      }
      {
        name: 'allow-azure-load-balancer'
        properties: {
          priority: 120
          direction: 'Inbound'
          access: 'Allow'
          protocol: '*'
          sourceAddressPrefix: 'AzureLoadBalancer'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
      {
        name: 'deny-internet-in'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'Internet'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource nsgPostgres 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${namePrefix}-nsg-postgres'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-apps-to-postgres'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: subnets.apps
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.postgres
          destinationPortRange: '5432'
        }
      }
      {
        name: 'deny-vnet-in'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'VirtualNetwork'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource nsgEndpoints 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${namePrefix}-nsg-endpoints'
  location: location
  tags: tags
  properties: {
    securityRules: [
      {
        name: 'allow-apps-to-endpoints'
        properties: {
          priority: 100
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: subnets.apps
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.endpoints
          destinationPortRanges: ['443', '6380']
        }
      }
      {
        // The gateway reads its TLS certificate from Key Vault.
        name: 'allow-appgw-to-keyvault'
        properties: {
          priority: 110
          direction: 'Inbound'
          access: 'Allow'
          protocol: 'Tcp'
          sourceAddressPrefix: subnets.appgw
          sourcePortRange: '*'
          destinationAddressPrefix: subnets.endpoints
          destinationPortRange: '443'
        }
      }
      {
        name: 'deny-vnet-in'
        properties: {
          priority: 4000
          direction: 'Inbound'
          access: 'Deny'
          protocol: '*'
          sourceAddressPrefix: 'VirtualNetwork'
          sourcePortRange: '*'
          destinationAddressPrefix: '*'
          destinationPortRange: '*'
        }
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: '${namePrefix}-vnet'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [addressPrefix]
    }
    subnets: [
      {
        name: 'appgw'
        properties: {
          addressPrefix: subnets.appgw
          networkSecurityGroup: { id: nsgAppGw.id }
        }
      }
      {
        name: 'apps'
        properties: {
          addressPrefix: subnets.apps
          networkSecurityGroup: { id: nsgApps.id }
          delegations: [
            {
              name: 'container-apps'
              properties: { serviceName: 'Microsoft.App/environments' }
            }
          ]
        }
      }
      {
        name: 'postgres'
        properties: {
          addressPrefix: subnets.postgres
          networkSecurityGroup: { id: nsgPostgres.id }
          delegations: [
            {
              name: 'postgres-flexible'
              properties: { serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers' }
            }
          ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: subnets.endpoints
          networkSecurityGroup: { id: nsgEndpoints.id }
          // NSG rules apply to the private endpoints too.
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

output vnetId string = vnet.id
output appGwSubnetId string = '${vnet.id}/subnets/appgw'
output appsSubnetId string = '${vnet.id}/subnets/apps'
output postgresSubnetId string = '${vnet.id}/subnets/postgres'
output endpointsSubnetId string = '${vnet.id}/subnets/endpoints'
output appGwPrefix string = subnets.appgw
output appsPrefix string = subnets.apps
