// Application Gateway v2 with a Web Application Firewall policy (OWASP 3.2 core rules and
// bot protection, prevention mode): the one public entry point. TLS terminates here with a
// certificate read from Key Vault; HTTP only redirects to HTTPS; the backend is the API's
// internal ingress, over HTTPS again.
param location string
param namePrefix string
param subnetId string
param zones array
param identityId string
param publicHostname string
@description('Key Vault secret id (versionless) of the TLS certificate for publicHostname.')
param certificateSecretId string
param backendFqdn string
param minCapacity int
param maxCapacity int
@description('Largest request body the WAF lets through, MB (attachments: HELPDESK_MAX_UPLOAD_BYTES).')
param fileUploadLimitInMb int = 30
param workspaceId string
param tags object

resource policy 'Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies@2023-11-01' = {
  name: '${namePrefix}-waf-policy'
  location: location
  tags: tags
  properties: {
    policySettings: {
      state: 'Enabled'
      mode: 'Prevention'
      requestBodyCheck: true
      maxRequestBodySizeInKb: 128
      fileUploadLimitInMb: fileUploadLimitInMb
    }
    managedRules: {
      managedRuleSets: [
        {
          ruleSetType: 'OWASP'
          ruleSetVersion: '3.2'
        }
        {
          ruleSetType: 'Microsoft_BotManagerRuleSet'
          ruleSetVersion: '1.0'
        }
      ]
    }
  }
}

resource publicIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = {
  name: '${namePrefix}-agw-ip'
  location: location
  tags: tags
  zones: zones
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
    dnsSettings: {
      domainNameLabel: '${namePrefix}-${uniqueString(resourceGroup().id)}'
    }
  }
}

var gatewayName = '${namePrefix}-agw'
var gatewayId = resourceId('Microsoft.Network/applicationGateways', gatewayName)

resource gateway 'Microsoft.Network/applicationGateways@2023-11-01' = {
  name: gatewayName
  location: location
  tags: tags
  zones: zones
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    sku: {
      name: 'WAF_v2'
      tier: 'WAF_v2'
    }
    autoscaleConfiguration: {
      minCapacity: minCapacity
      maxCapacity: maxCapacity
    }
    firewallPolicy: { id: policy.id }
    // TLS 1.2 and 1.3 only, ECDHE + AES-GCM suites. For TLS 1.3 only use
    // { policyType: 'CustomV2', minProtocolVersion: 'TLSv1_3' } (see README).
    sslPolicy: {
      policyType: 'Predefined'
      policyName: 'AppGwSslPolicy20220101S'
    }
    gatewayIPConfigurations: [
      {
        name: 'gateway-ip'
        properties: { subnet: { id: subnetId } }
      }
    ]
    sslCertificates: [
      {
        name: 'public-cert'
        properties: { keyVaultSecretId: certificateSecretId }
      }
    ]
    frontendIPConfigurations: [
      {
        name: 'public'
        properties: { publicIPAddress: { id: publicIp.id } }
      }
    ]
    frontendPorts: [
      {
        name: 'https'
        properties: { port: 443 }
      }
      {
        name: 'http'
        properties: { port: 80 }
      }
    ]
    backendAddressPools: [
      {
        name: 'api'
        properties: {
          backendAddresses: [{ fqdn: backendFqdn }]
        }
      }
    ]
    probes: [
      {
        name: 'api-ready'
        properties: {
          protocol: 'Https'
          path: '/readyz'
          interval: 15
          timeout: 10
          unhealthyThreshold: 3
          pickHostNameFromBackendHttpSettings: true
          match: { statusCodes: ['200'] }
        }
      }
    ]
    backendHttpSettingsCollection: [
      {
        name: 'api-https'
        properties: {
          port: 443
          protocol: 'Https'
          pickHostNameFromBackendAddress: true
          requestTimeout: 60
          cookieBasedAffinity: 'Disabled'
          probe: { id: '${gatewayId}/probes/api-ready' }
        }
      }
    ]
    httpListeners: [
      {
        name: 'https'
        properties: {
          frontendIPConfiguration: { id: '${gatewayId}/frontendIPConfigurations/public' }
          frontendPort: { id: '${gatewayId}/frontendPorts/https' }
          protocol: 'Https'
          hostName: publicHostname
          requireServerNameIndication: true
          sslCertificate: { id: '${gatewayId}/sslCertificates/public-cert' }
        }
      }
      {
        name: 'http'
        properties: {
          frontendIPConfiguration: { id: '${gatewayId}/frontendIPConfigurations/public' }
          frontendPort: { id: '${gatewayId}/frontendPorts/http' }
          protocol: 'Http'
          hostName: publicHostname
        }
      }
    ]
    redirectConfigurations: [
      {
        name: 'http-to-https'
        properties: {
          redirectType: 'Permanent'
          targetListener: { id: '${gatewayId}/httpListeners/https' }
          includePath: true
          includeQueryString: true
        }
      }
    ]
    requestRoutingRules: [
      {
        name: 'api'
        properties: {
          ruleType: 'Basic'
          priority: 100
          httpListener: { id: '${gatewayId}/httpListeners/https' }
          backendAddressPool: { id: '${gatewayId}/backendAddressPools/api' }
          backendHttpSettings: { id: '${gatewayId}/backendHttpSettingsCollection/api-https' }
        }
      }
      {
        name: 'redirect'
        properties: {
          ruleType: 'Basic'
          priority: 200
          httpListener: { id: '${gatewayId}/httpListeners/http' }
          redirectConfiguration: { id: '${gatewayId}/redirectConfigurations/http-to-https' }
        }
      }
    ]
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: gateway
  name: 'waf'
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

output publicIpAddress string = publicIp.properties.ipAddress
output publicFqdn string = publicIp.properties.dnsSettings.fqdn
