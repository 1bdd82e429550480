#!/bin/sh
# relaycert deploy hook skeleton: copy the PFX to an Exchange server and import it there with
# exchange-import.ps1, over SSH (Windows OpenSSH server on the Exchange server; PowerShell 7 or
# Windows PowerShell as its shell). Test it by hand first:
#   RELAYCERT_PFX_FILE=/var/lib/relaycert/deployed/exch/cert.pfx ./exchange-remote.sh exch01
# Needs: an SSH key for relaycert's user authorised for an Exchange administrator account,
# exchange-import.ps1 in C:\ProgramData\relaycert\, and the PFX password file there.
set -eu
host=${1:?usage: exchange-remote.sh EXCHANGE-HOST}
remote='C:/ProgramData/relaycert/incoming.pfx'
scp -q -o BatchMode=yes "$RELAYCERT_PFX_FILE" "$host:$remote"
ssh -o BatchMode=yes "$host" powershell -NoProfile -ExecutionPolicy Bypass \
    -File 'C:\ProgramData\relaycert\exchange-import.ps1' -PfxPath "'$remote'"
