"""The capture listener: an SMTP server inside relaycert that the on-prem server relays probe
messages to, so relaycert sees the certificate that server presents as a TLS *client* (what
Exchange Online attributes relayed mail by).

- ``tls``: server-side TLS over asyncio streams with pyOpenSSL, which (unlike the standard
  library) can ask for a client certificate and accept any, so an expired, untrusted or
  self-signed one is captured instead of failing the handshake.
- ``dialogue``: one SMTP session, bounded at every step; never a relay, never keeps a body.
- ``listener``: the listening sockets and the sessions they accept.
- ``options``: what a listener runs with, built once from the ``[capture]`` section.
- ``peers``: fair admission: reserved connections for known peers, per-peer limits and rates.
- ``waiters``: who waits for which token, which tokens are valid, what becomes of a delivery.
- ``evidence``: every delivery of a token, kept (never first-come), and which count for the
  check (``relay_addresses``).
- ``certs``: the listener's own certificate, from files or generated once (key mode 0600).
- ``tokens``: signed probe tokens (HMAC with a per-installation secret): only a token this
  installation issued attributes a capture to an endpoint's check.
- ``submission``: what one outbound check needs (an ``OutboundCheck``, resolved once by the
  caller) and its submission prepared (address resolved, password read).
- ``outbound``: the outbound check as one ``Attempt``: submit a probe message through the
  on-prem server and wait for its token here.

May import: ``monitor.probe`` and everything below it (of the configuration only section
models, never the loaded file: the callers resolve what a listener or a check needs).  Nothing
imports it but the pipeline, the service and the CLI.
"""
