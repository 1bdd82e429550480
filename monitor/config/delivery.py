"""``[[delivery_connectors]]``: Exchange Online's outbound connectors to the organization, the
delivery contract each served certificate is judged by (``monitor.config.sections``
re-exports it with the other sections)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from checks.base import DeliveryContract
from monitor.config.common import DOMAIN_PATTERN as _DOMAIN_PATTERN
from monitor.config.common import HOST as _HOST
from monitor.config.common import Model as _Model
from monitor.config.common import Name, escaped

TlsSettings = Literal["EncryptionOnly", "CertificateValidation", "DomainValidation"]
ConnectorMode = Literal["Opportunistic", "Mandatory", "None"]


class DeliveryConnectorConfig(_Model):
    """An Exchange Online outbound connector to the organization (``Get-OutboundConnector``,
    ConnectorType OnPremises): where Exchange Online delivers, and what it checks there."""

    name: Name
    smart_hosts: tuple[str, ...] = ()
    use_mx_record: bool = False
    recipient_domains: tuple[str, ...] = ()
    tls_settings: TlsSettings | None = None  # not set: opportunistic TLS, nothing validated
    tls_domain: str | None = None
    dane_mode: ConnectorMode = "Opportunistic"
    mta_sts_mode: ConnectorMode = "Opportunistic"

    @field_validator("smart_hosts")
    @classmethod
    def _smart_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        hosts = []
        for host in value:
            try:
                hosts.append(str(ipaddress.ip_address(host)))
            except ValueError:
                if not _HOST.match(host):
                    raise ValueError(f"'{escaped(host)}' is not a host name or address") from None
                hosts.append(host.lower().rstrip("."))
        return tuple(hosts)

    @field_validator("recipient_domains")
    @classmethod
    def _recipient_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not _DOMAIN_PATTERN.match(domain) and domain != "*":
                raise ValueError(f"'{escaped(domain)}' is not a domain such as 'contoso.com'")
        return tuple(d.lower().rstrip(".") for d in value)

    @field_validator("tls_domain")
    @classmethod
    def _tls_domain(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN_PATTERN.match(value):
            raise ValueError(
                f"'{escaped(value)}' is not a valid TlsDomain: use a domain "
                "('mail.contoso.com') or a leading wildcard ('*.contoso.com')"
            )
        return value.lower().rstrip(".") if value else value

    @model_validator(mode="after")
    def _consistent(self) -> DeliveryConnectorConfig:
        if self.tls_settings == "DomainValidation" and not self.tls_domain:
            raise ValueError(
                "tls_settings = 'DomainValidation' needs tls_domain (the name Exchange Online "
                "expects in the certificate)"
            )
        if not self.use_mx_record and not self.smart_hosts:
            raise ValueError("give smart_hosts, or use_mx_record = true with recipient_domains")
        return self

    def to_contract(self, unmonitored: tuple[str, ...] = ()) -> DeliveryContract:
        return DeliveryContract(
            self.name,
            self.tls_settings,
            self.tls_domain,
            self.dane_mode,
            self.mta_sts_mode,
            unmonitored,
        )
