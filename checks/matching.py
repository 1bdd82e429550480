"""Name matching, twice: RFC 6125 host names, and Exchange Online connector semantics.

They differ on purpose.  RFC 6125 (what a TLS client does with the server's host name): a
certificate wildcard ``*.contoso.com`` covers exactly one extra label.  Exchange Online's
``TlsSenderCertificateName`` compares *domain patterns*: the connector value ``*.contoso.com``
means contoso.com and every subdomain at any depth, a wildcard certificate name satisfies only the
identical connector pattern, and an exact connector value matches only that exact name.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)  # a fleet has few distinct names; every rule normalizes them again
def normalize(name: str) -> str:
    """Lower-case, strip one trailing dot and surrounding space; IDNA-encode non-ASCII labels."""
    name = name.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return name
    return name


def is_wildcard(name: str) -> bool:
    return normalize(name).startswith("*.")


def base_domain(pattern: str) -> str:
    """``*.contoso.com`` -> ``contoso.com``; ``mail.contoso.com`` unchanged."""
    pattern = normalize(pattern)
    return pattern[2:] if pattern.startswith("*.") else pattern


def is_within(name: str, domain: str) -> bool:
    """``name`` equals ``domain`` or is a subdomain of it at any depth (label-aligned)."""
    name, domain = normalize(name), normalize(domain)
    return name == domain or name.endswith("." + domain)


def rfc6125_match(host: str, cert_name: str) -> bool:
    """Does the certificate DNS name ``cert_name`` cover ``host`` (RFC 6125 section 6.4)?

    Only a complete left-most ``*`` label is honoured, it matches exactly one label, and it never
    matches a public-suffix-like two-label name such as ``*.com``.
    """
    host, cert_name = normalize(host), normalize(cert_name)
    if "*" not in cert_name:
        return host == cert_name
    if not cert_name.startswith("*.") or "*" in cert_name[2:]:
        return False
    suffix = cert_name[2:]
    if suffix.count(".") < 1:
        return False
    first, _, rest = host.partition(".")
    return bool(first) and rest == suffix


def connector_match(connector_value: str, cert_name: str) -> bool:
    """Does ``cert_name`` (a CN or DNS SAN) satisfy the connector's TlsSenderCertificateName?"""
    pattern, name = normalize(connector_value), normalize(cert_name)
    if not pattern or not name:
        return False
    if name.startswith("*."):
        # A wildcard certificate satisfies only the identical connector pattern.
        return name == pattern
    if pattern.startswith("*."):
        return is_within(name, pattern[2:])
    return name == pattern


def registered_domain(domain: str, accepted_domains: tuple[str, ...]) -> str | None:
    """The accepted domain that ``domain`` equals or lies under, if any (the longest one)."""
    matches = [a for a in accepted_domains if is_within(domain, a)]
    return max(matches, key=len) if matches else None
