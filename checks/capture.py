"""Rules about the evidence of an outbound check itself: who delivered its signed token to the
capture listener.

A token is in the on-prem server's mail log (it names every recipient) and crosses the network in
clear when the server relays without TLS, so whoever reads it can deliver it too.  Evidence is
therefore never first-come: every delivery is kept, the verdict is the worse of those that count,
and these rules name each delivery (peer, EHLO name, TLS, certificate), so a race is seen, not won.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from checks.base import DeliveryEvidence, Finding, Observation, Policy, RuleInfo, Severity, rule


def _listed(deliveries: Sequence[DeliveryEvidence]) -> str:
    return "; ".join(f"{i}) {d.describe()}" for i, d in enumerate(deliveries, 1))


@rule(
    "capture.token_reused",
    Severity.WARNING,
    "Probe token delivered more than once",
    "The signed token of one outbound check reached the capture listener in more than one "
    "message. A relay delivers a probe message once; a second delivery is a replay or a race by "
    "someone who read the token (it is in the on-prem server's mail log, and in clear on the "
    "wire when the server relays without TLS), or a duplicate from a retrying relay. Every "
    "delivery is kept and the check's verdict is the worse of them, so a replay can open an "
    "alert but never resolve one; the finding names every delivery so you can tell the relay's "
    "own from the other.",
    "Compare the deliveries with the relay: the one from another peer, EHLO name or certificate "
    "is not your server's. Find who reads the mail log or the traffic (the token is worthless "
    "after `[capture] token_lifetime`), relay with TLS, and set the endpoint's "
    "`[endpoints.outbound] relay_addresses` so deliveries from any other peer never count.",
)
def token_reused(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    counted = [d for d in obs.deliveries if d.counted]
    if len(counted) > 1:
        yield info.finding(
            f"{obs.where}: the probe token arrived in {len(counted)} deliveries, the verdict is "
            f"the worse of them: {_listed(counted)}"
        )


@rule(
    "capture.unlisted_peer",
    Severity.WARNING,
    "Probe token delivered from outside relay_addresses",
    "A message carrying the outbound check's valid token came from a peer that is not in the "
    "endpoint's `relay_addresses`. It counts for nothing (it is kept as an unattributed "
    "capture), but someone other than your relay holds the token, or the relay sends from an "
    "address the list does not name (a new NAT or cluster address).",
    "If the address is your relay's (its outgoing address, the NAT or load-balancer address "
    "the capture listener sees), add it to `[endpoints.outbound] relay_addresses`. Otherwise "
    "find who reads the mail log or the traffic between the server and the monitor.",
)
def unlisted_peer(info: RuleInfo, obs: Observation, policy: Policy) -> Iterator[Finding]:
    strangers = [d for d in obs.deliveries if not d.counted]
    if strangers:
        yield info.finding(
            f"{obs.where}: the probe token arrived from {len(strangers)} peer(s) outside "
            f"relay_addresses (not counted): {_listed(strangers)}"
        )


RULES = (token_reused, unlisted_peer)
