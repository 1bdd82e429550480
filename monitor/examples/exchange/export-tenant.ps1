<#
Export what relaycert needs to know about the tenant, for [tenant] inbound_connectors_file,
outbound_connectors_file and accepted_domains_file. Run it on a schedule (Task Scheduler, every
hour) on a host that can reach Exchange Online, and put the three files where relaycert reads them
(a share, or copy them with scp); the daemon notices changed files within 30 seconds and reloads.

Authentication: certificate-based app-only access (no stored password), as Microsoft documents
for unattended scripts: an Entra app with the Exchange.ManageAsApp permission and a directory
role that can read connectors (Global Reader works; Security Reader does not).
#>
param(
    [Parameter(Mandatory)] [string]$AppId,
    [Parameter(Mandatory)] [string]$Organization,          # contoso.onmicrosoft.com
    [Parameter(Mandatory)] [string]$CertificateThumbprint, # in the current user's or machine's store
    [string]$OutDir = "C:\ProgramData\relaycert\tenant"
)
$ErrorActionPreference = "Stop"
Import-Module ExchangeOnlineManagement
Connect-ExchangeOnline -AppId $AppId -Organization $Organization `
    -CertificateThumbprint $CertificateThumbprint -ShowBanner:$false
try {
    New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
    # Exchange Online PowerShell V3 writes enums as strings ("OnPremises"), which relaycert needs.
    Get-InboundConnector | ConvertTo-Json -Depth 5 |
        Set-Content -Encoding UTF8 -Path (Join-Path $OutDir "inbound-connectors.json.tmp")
    Get-OutboundConnector | ConvertTo-Json -Depth 5 |
        Set-Content -Encoding UTF8 -Path (Join-Path $OutDir "outbound-connectors.json.tmp")
    Get-OutboundConnector | ConvertTo-Json -Depth 5 |
        Set-Content -Encoding UTF8 -Path (Join-Path $OutDir "outbound-connectors.json.tmp")
    Get-AcceptedDomain -ResultSize Unlimited | ConvertTo-Json -Depth 5 |
        Set-Content -Encoding UTF8 -Path (Join-Path $OutDir "accepted-domains.json.tmp")
    # Replace the files only when every export succeeded (a reader never sees half a file).
    Move-Item -Force (Join-Path $OutDir "inbound-connectors.json.tmp") (Join-Path $OutDir "inbound-connectors.json")
    Move-Item -Force (Join-Path $OutDir "outbound-connectors.json.tmp") (Join-Path $OutDir "outbound-connectors.json")
    Move-Item -Force (Join-Path $OutDir "accepted-domains.json.tmp") (Join-Path $OutDir "accepted-domains.json")
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}
