"""Several instances: an endpoint of a site no live instance serves is not probed at all.
Pure: the daemon passes the endpoints' sites and the live instances' sites."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from checks.base import Finding, RuleInfo, Severity

UNWATCHED = RuleInfo(
    "cluster.site_unwatched",
    Severity.CRITICAL,
    "Endpoints of a site no live relaycert instance serves",
    "Endpoints with `site = ...` are probed only by instances of that site (`[instance] site`). "
    "No instance of the site has sent a heartbeat within three heartbeats, so these endpoints "
    "are not probed: certificate problems there go unnoticed.",
    "Start (or fix) a relaycert instance in that site with `[instance] site` set to it; "
    "`relaycert status` lists the instances and their last heartbeat.",
)
RULES = (UNWATCHED,)


def unwatched(
    endpoint_sites: Mapping[str, str | None], live_sites: Iterable[str | None]
) -> list[Finding]:
    """One finding per site that has endpoints but no live instance (an endpoint without a
    site is probed by any instance)."""
    live = set(live_sites)
    by_site: dict[str, list[str]] = {}
    for name, site in endpoint_sites.items():
        if site is not None and site not in live:
            by_site.setdefault(site, []).append(name)
    findings = []
    for site, names in sorted(by_site.items()):
        shown = ", ".join(sorted(names)[:10]) + (" ..." if len(names) > 10 else "")
        findings.append(
            UNWATCHED.finding(
                f"site '{site}': no live relaycert instance; {len(names)} endpoint(s) not "
                f"probed: {shown}"
            )
        )
    return findings
