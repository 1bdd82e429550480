"""Accepted (verified) domains from Microsoft Graph, ``GET /v1.0/domains``, with the OAuth 2.0
client-credentials grant (an app registration with ``Domain.Read.All``, its secret from env or
file).  The daemon writes what Graph answers to ``[tenant.graph] output`` (Graph's own JSON
shape), which ``[tenant] accepted_domains_file`` reads like an Exchange export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.config.integrations import GraphConfig
from monitor.errors import ConfigError
from monitor.files import write_atomic
from monitor.secrets import read_secret

SCOPE = "https://graph.microsoft.com/.default"


def fetch_domains(
    *,
    tenant_id: str,
    client_id: str,
    secret: str,
    authority: str,
    graph_url: str,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Every domain object Graph lists (``@odata.nextLink`` pages followed)."""
    import httpx

    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            token = client.post(
                f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token",
                data={
                    "client_id": client_id,
                    "client_secret": secret,
                    "scope": SCOPE,
                    "grant_type": "client_credentials",
                },
            )
            if token.status_code != 200:
                raise ConfigError(
                    f"[tenant.graph]: the token request was refused (HTTP {token.status_code}); "
                    "check tenant_id, client_id and the secret"
                )
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            url: str | None = f"{graph_url.rstrip('/')}/v1.0/domains"
            domains: list[dict[str, Any]] = []
            for _ in range(100):  # pages
                if url is None:
                    break
                page = client.get(url, headers=headers)
                if page.status_code != 200:
                    raise ConfigError(
                        f"[tenant.graph]: GET /v1.0/domains answered HTTP {page.status_code}; "
                        "the app needs Domain.Read.All (application permission, admin consent)"
                    )
                body = page.json()
                domains += [d for d in body.get("value", []) if isinstance(d, dict)]
                url = body.get("@odata.nextLink")
            return domains
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"[tenant.graph]: Microsoft Graph unreachable: {type(exc).__name__}"
        ) from exc
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"[tenant.graph]: unexpected answer from Graph: {exc}") from exc


def refresh(settings: GraphConfig, where: str, base: Path) -> Path:
    """Fetch and write ``settings.output`` (relative to ``base``); returns the path."""
    secret = (
        read_secret(
            f"{where}.client_secret",
            settings.client_secret_env,
            settings.client_secret_file,
        )
        or ""
    )
    domains = fetch_domains(
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        secret=secret,
        authority=settings.authority,
        graph_url=settings.graph_url,
    )
    path = settings.output if settings.output.is_absolute() else base / settings.output
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"value": domains}, indent=1).encode())
    return path
