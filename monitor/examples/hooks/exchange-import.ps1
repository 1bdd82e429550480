<#
relaycert deploy hook for Exchange Server (run on the Exchange server, e.g. by a scheduled task
that picks up the PFX relaycert deployed to a share, or through PowerShell remoting from the
hook). It imports the PFX, enables it for SMTP, and updates the Send connector to Exchange
Online so that it presents the new certificate.

THE LAST STEP IS THE ONE THAT BREAKS MAIL WHEN FORGOTTEN: the Send connector selects its
certificate by TlsCertificateName = "<I>issuer<S>subject". A renewed certificate with a new
issuer (CAs rotate intermediates) no longer matches, Exchange falls back to no certificate, and
Exchange Online rejects relayed mail with 550 5.7.64 TenantAttribution, or the connector fails
with 454 4.7.5. After this script, relaycert re-probes the endpoints to verify the certificate
that is actually served.

Parameters come from relaycert's environment variables when run as its hook:
  RELAYCERT_PFX_FILE   the PFX (password from the file or variable you configured)
  RELAYCERT_NAMES      the certificate's names
#>
param(
    [string]$PfxPath = $env:RELAYCERT_PFX_FILE,
    [string]$PasswordFile = "C:\ProgramData\relaycert\pfx-password.txt",
    [string]$SendConnector = "Outbound to Office 365*"
)
$ErrorActionPreference = "Stop"
Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn -ErrorAction SilentlyContinue

$password = ConvertTo-SecureString (Get-Content -Raw $PasswordFile).Trim() -AsPlainText -Force
$bytes = [System.IO.File]::ReadAllBytes($PfxPath)
$cert = Import-ExchangeCertificate -FileData $bytes -Password $password -PrivateKeyExportable $true

# Enable for SMTP without replacing the default SMTP certificate used by EdgeSync (-Force
# answers the prompt with "no" semantics only on newer builds; review on yours).
Enable-ExchangeCertificate -Thumbprint $cert.Thumbprint -Services SMTP -DoNotRequireSsl -Force

$tlsName = "<I>$($cert.Issuer)<S>$($cert.Subject)"
Get-SendConnector -Identity $SendConnector | Set-SendConnector -TlsCertificateName $tlsName
# If the on-premises receive connector used by Exchange Online names the certificate too:
# Get-ReceiveConnector "*Default Frontend*" | Set-ReceiveConnector -TlsCertificateName $tlsName

Write-Output "relaycert: imported $($cert.Thumbprint), Send connector now uses $tlsName"
