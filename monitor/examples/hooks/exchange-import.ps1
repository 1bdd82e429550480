<#
relaycert deploy hook for Exchange Server. Run it ON the Exchange server, as an Exchange
administrator. Two ways to get the PFX there from a Linux monitor:

  1. A share: point the renewal's deploy.dir at a folder the Exchange server can read (an SMB
     share mounted on the monitor, e.g. //exch01/relaycert$ on /var/lib/relaycert/deployed/exch),
     and run this script from a scheduled task every few minutes; it does nothing when the PFX
     has not changed (-StateFile).
  2. PowerShell remoting from the monitor (PowerShell 7 on Linux with SSH remoting to the
     Exchange server), as relaycert's hook (hooks/exchange-remote.sh is a skeleton):
        pwsh -NoProfile -File exchange-import.ps1 -ComputerName exch01.contoso.com

It imports the PFX (private key NOT exportable unless -Exportable), enables it for SMTP,
updates the Send connector to Exchange Online, and with -RemoveReplaced removes the certificate
it replaced (only after relaycert verified the new one is served: run that as a second step, see
below).

THE SEND CONNECTOR STEP IS THE ONE THAT BREAKS MAIL WHEN FORGOTTEN: the Send connector selects
its certificate by TlsCertificateName = "<I>issuer<S>subject". A renewed certificate with a new
issuer (CAs rotate intermediates) no longer matches, Exchange sends no certificate, and Exchange
Online rejects relayed mail with 550 5.7.64 TenantAttribution ATTR36. relaycert's outbound check
(docs/outbound.md) sees that; its listener re-probe sees the served certificate.

About -Force on Enable-ExchangeCertificate: per Microsoft's documentation, -Force suppresses the
confirmation prompt, and when the certificate is enabled for SMTP that prompt is the question
"overwrite the existing default SMTP certificate?": -Force answers YES, so the new certificate
REPLACES the default SMTP certificate (the one used for STARTTLS by default and by EdgeSync).
That is what a renewal wants. Leave -Force out (-KeepDefault) to keep the current default.
#>
param(
    [string]$PfxPath = $env:RELAYCERT_PFX_FILE,
    [string]$PasswordFile = "C:\ProgramData\relaycert\pfx-password.txt",
    [string]$SendConnector = "Outbound to Office 365*",
    [string]$StateFile = "C:\ProgramData\relaycert\imported.txt",
    [switch]$Exportable,
    [switch]$KeepDefault,
    [string]$RemoveReplaced = ""   # thumbprint to remove after relaycert verified the new one
)
$ErrorActionPreference = "Stop"
Add-PSSnapin Microsoft.Exchange.Management.PowerShell.SnapIn -ErrorAction SilentlyContinue

if ($RemoveReplaced) {
    # Step 2, after `relaycert status` shows the new certificate served everywhere.
    Remove-ExchangeCertificate -Thumbprint $RemoveReplaced -Confirm:$false
    Write-Output "relaycert: removed the replaced certificate $RemoveReplaced"
    exit 0
}

$bytes = [System.IO.File]::ReadAllBytes($PfxPath)
$hash = (Get-FileHash -Algorithm SHA256 -Path $PfxPath).Hash
if ((Test-Path $StateFile) -and ((Get-Content -Raw $StateFile).Trim() -eq $hash)) {
    Write-Output "relaycert: $PfxPath already imported"
    exit 0
}
$password = ConvertTo-SecureString (Get-Content -Raw $PasswordFile).Trim() -AsPlainText -Force
$cert = Import-ExchangeCertificate -FileData $bytes -Password $password `
    -PrivateKeyExportable ([bool]$Exportable)

if ($KeepDefault) {
    Enable-ExchangeCertificate -Thumbprint $cert.Thumbprint -Services SMTP -DoNotRequireSsl
} else {
    # Replaces the default SMTP certificate without prompting (see -Force above).
    Enable-ExchangeCertificate -Thumbprint $cert.Thumbprint -Services SMTP -DoNotRequireSsl -Force
}

$tlsName = "<I>$($cert.Issuer)<S>$($cert.Subject)"
Get-SendConnector -Identity $SendConnector | Set-SendConnector -TlsCertificateName $tlsName
# If the on-premises receive connector used by Exchange Online names the certificate too:
# Get-ReceiveConnector "*Default Frontend*" | Set-ReceiveConnector -TlsCertificateName $tlsName

Set-Content -Path $StateFile -Value $hash
Write-Output "relaycert: imported $($cert.Thumbprint), Send connector now uses $tlsName"
