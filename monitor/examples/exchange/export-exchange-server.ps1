<#
Export the Send connectors and certificates of an Exchange Server organisation for relaycert's
[exchange_server] (`relaycert exchange` checks that the Send connector toward Exchange Online
names, by TlsCertificateName, exactly one valid certificate enabled for SMTP). Run it in the
Exchange Management Shell on a schedule, and after every certificate renewal (the Exchange deploy
hook example can call it), then copy the two files to the monitor.
#>
param([string]$OutDir = "C:\ProgramData\relaycert\exchange")
$ErrorActionPreference = "Stop"
Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn -ErrorAction SilentlyContinue
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
Get-SendConnector | Select-Object Name, Enabled, SmartHosts, AddressSpaces, RequireTLS,
    TlsAuthLevel, TlsDomain, @{n = "TlsCertificateName"; e = { "$($_.TlsCertificateName)" }} |
    ConvertTo-Json -Depth 5 | Set-Content -Encoding UTF8 (Join-Path $OutDir "send-connectors.json")
# Every server's certificates (the connector's source transport servers must each have one).
Get-ExchangeServer | Where-Object { $_.IsHubTransportServer -or $_.IsMailboxServer } | ForEach-Object {
    Get-ExchangeCertificate -Server $_.Name
} | Select-Object Thumbprint, Subject, Issuer, NotAfter, @{n = "Services"; e = { "$($_.Services)" }},
    CertificateDomains, Status |
    ConvertTo-Json -Depth 5 | Set-Content -Encoding UTF8 (Join-Path $OutDir "exchange-certificates.json")
