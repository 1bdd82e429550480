"""One bounded HTTP GET for everything relaycert reads from hosts it does not control: a CRL
from a certificate's distribution point (:mod:`.crl`), an MTA-STS policy (:mod:`.mtasts`).

Every answer is attacker-controlled (a plain-HTTP path can be injected into, a policy host can
be anybody's), so every fetch is bounded in each dimension, and every way it can fail ends in
one :class:`FetchError` with the reason, never in another exception:

- time: ``timeout`` for the whole exchange, connection to last byte;
- the response head: httpcore's limit on an incomplete head (100 KiB) and its parser, so a
  head cut short or never ended is a protocol error, not a hang or a buffer overrun;
- the body: ``max_size`` bytes, counted as they arrive off the wire;
- encoding: only ``identity`` is asked for and only ``identity`` is taken.  A compressed body
  (``Content-Encoding: gzip``, ``br``, ...) is refused before a byte of it is decoded, because a
  few megabytes of gzip expand to gigabytes: decoding even one network chunk of it can take a
  hundred megabytes before any count sees it.  CAs serve CRLs and MTA-STS hosts serve policies
  uncompressed (RFC 5280 section 4.2.1.13, RFC 8461 section 3.3), so nothing real is lost;
- redirects: none unless asked for (MTA-STS forbids them), at most ``max_redirects``, followed
  here rather than by httpx, which reads and decodes a redirect's whole body first.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from checks.certinfo import clip

ACCEPT_ENCODING = "identity"


class FetchError(Exception):
    """Why a fetch gave nothing to use (the message is the reason shown)."""


class FetchTimeoutError(FetchError, TimeoutError):
    """No complete answer within the timeout."""


class FetchTooLargeError(FetchError):
    """The body is longer than the limit (or compressed, so its size cannot be bounded)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetch got: the status, the content type, and the body (read only for 200)."""

    status: int
    content_type: str
    body: bytes


async def fetch(
    url: str,
    *,
    timeout: float,
    max_size: int,
    verify: ssl.SSLContext | bool = False,
    host: str | None = None,
    accept: str = "*/*",
    max_redirects: int = 0,
    proxy: str | None = None,
) -> Fetched:
    """GET ``url`` within every bound of this module.  ``host``: the name to send as ``Host``
    and SNI (and to verify the certificate against) when ``url`` names the address to connect
    to.  Raises :class:`FetchError`; never any other exception but cancellation."""
    import httpx

    headers = {"Accept": accept, "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": "relaycert"}
    extensions = {}
    if host is not None:
        headers["Host"] = host
        extensions["sni_hostname"] = host
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                timeout=timeout,
                verify=verify,
                follow_redirects=False,  # followed below, without reading a redirect's body
                proxy=proxy,
                trust_env=False,
            ) as client,
        ):
            for _ in range(max_redirects + 1):
                request = client.build_request("GET", url, headers=headers, extensions=extensions)
                response = await client.send(request, stream=True)
                try:
                    kind = response.headers.get("Content-Type", "")
                    location = response.headers.get("Location")
                    if response.is_redirect and location and max_redirects:
                        url = str(response.url.join(location))
                        continue
                    if response.status_code != 200:
                        return Fetched(response.status_code, kind, b"")
                    return Fetched(200, kind, await _body(response, max_size))
                finally:
                    await response.aclose()  # its body unread: a redirect's is never decoded
            raise FetchError(f"more than {max_redirects} redirects")
    except TimeoutError:
        raise FetchTimeoutError(f"no complete answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise FetchError(_why(exc)) from None
    except (httpx.InvalidURL, httpx.CookieConflict, ValueError, UnicodeError) as exc:
        raise FetchError(clip(f"{clip(url, 200)} cannot be fetched: {exc}", 300)) from None


async def _body(response: object, limit: int) -> bytes:
    """The raw body, refused when it is encoded or longer than ``limit`` bytes."""
    import httpx

    assert isinstance(response, httpx.Response)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", ACCEPT_ENCODING):
        raise FetchTooLargeError(
            f"the server sent a {clip(encoding, 40)!r}-encoded body though only identity was "
            "asked for: refused, since a compressed body can expand far past the size limit"
        )
    size = response.headers.get("Content-Length", "")
    if size.isdigit() and int(size) > limit:
        raise FetchTooLargeError(f"the answer is {size} bytes, larger than {_amount(limit)}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise FetchTooLargeError(f"the answer is larger than {_amount(limit)}")
    return bytes(body)


def _amount(size: int) -> str:
    """``64 KiB``, ``10 MiB``, ``1000 bytes``."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _why(exc: Exception) -> str:
    """One line for an httpx error: its kind, and what the layer below said (a certificate
    that does not verify, a connection refused, a head cut short)."""
    cause: BaseException | None = exc
    detail = str(exc)
    while cause is not None and not detail:
        cause = cause.__cause__ or cause.__context__
        detail = str(cause) if cause is not None else ""
    return clip(f"{type(exc).__name__}: {detail or 'no detail'}", 300)
