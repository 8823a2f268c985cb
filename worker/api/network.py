"""How requests reach Mira: the base URL's safety, TLS trust, and the proxy the
environment names (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, in either case).

The proxy is looked up once per client, not per request: aiohttp's `trust_env`
would do it on a thread for every request, and would also read `~/.netrc`
credentials for the API host, which must never replace the bearer key.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import ssl
import urllib.request
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from yarl import URL

from worker import __version__
from worker.api.wire import Wire
from worker.config import Settings
from worker.errors import ConfigError

if TYPE_CHECKING:  # imported where a session is made: see client.py
    import aiohttp

USER_AGENT = f"mira-batch/{__version__}"


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url_security(settings: Settings) -> None:
    """Refuse to send the key in clear text to another machine.

    Raises:
        ConfigError: an http:// base URL to a non-loopback host without the opt-in.
    """
    parts = urlsplit(settings.base_url)
    if parts.scheme == "https" or settings.allow_insecure_http:
        return
    if is_loopback_host(parts.hostname or ""):
        return
    raise ConfigError(
        f"refusing to send the API key over plain http to {parts.hostname}: use an "
        "https:// base URL, or pass --allow-insecure-http if you really mean it"
    )


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system's trust (which SSL_CERT_FILE and SSL_CERT_DIR replace), plus
    the certificates of `ca_bundle`. Made once for each such trust: loading
    the system's CAs takes tens of milliseconds, and a run's sessions share it.

    Raises:
        ConfigError: the bundle cannot be read as PEM certificates.
    """
    trust = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return _tls_context(ca_bundle, trust)


@functools.cache
def _tls_context(
    ca_bundle: Path | None, trust: tuple[str | None, str | None]
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except ssl.SSLError as exc:  # before OSError, which it is a kind of
            reason = exc.reason or "not PEM certificates"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        else:
            return context
        raise ConfigError(
            f"cannot use the CA bundle {ca_bundle} (--ca-bundle, MIRA_CA_BUNDLE): "
            f"{reason}"
        )
    return context


def wire_to(url: URL, ca_bundle: Path | None, *, limit: int) -> Wire:
    """The lean path (wire.py) to `url`'s host, trusting what tls_context does.

    Raises:
        ConfigError: the CA bundle cannot be used (https only).
    """
    context = tls_context(ca_bundle) if url.scheme == "https" else None
    return Wire(url, ssl_context=context, limit=limit, user_agent=USER_AGENT)


@dataclass(frozen=True, slots=True)
class Proxy:
    """The proxy a URL is reached through: its address, and the headers for it
    alone (its credentials, when the address holds some)."""

    url: URL
    headers: dict[str, str]

    @property
    def shown(self) -> str:
        """The proxy's address for messages: never its credentials."""
        return str(self.url.with_user(None))


def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment names for `url`, unless NO_PROXY exempts it."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    address = urllib.request.getproxies().get(parts.scheme)
    if not address:
        return None
    if "://" not in address:
        address = f"http://{address}"  # `proxy:3128`, as curl reads it
    proxy = URL(address)
    headers = {}
    if proxy.user is not None:
        pair = f"{proxy.user}:{proxy.password or ''}".encode()
        headers["Proxy-Authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    return Proxy(proxy.with_user(None), headers)


@dataclass(frozen=True, slots=True)
class Route:
    """How requests to one base URL travel: directly, or through a proxy.
    Looked up once per client (`route_for`)."""

    proxy: Proxy | None = None

    @property
    def through(self) -> str:
        """` (through the proxy http://proxy:3128)` for messages; empty when direct."""
        return "" if self.proxy is None else f" (through the proxy {self.proxy.shown})"

    def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str | URL,
        headers: dict[str, str],
        *,
        timeout: aiohttp.ClientTimeout,
        data: bytes | None = None,
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """One request along this route: its own headers (the key), the
        proxy's credentials for the proxy alone, and no redirect followed (so
        the key never travels to another host)."""
        proxy_headers = None if self.proxy is None else self.proxy.headers or None
        return session.request(
            method,
            url,
            data=data,
            headers=headers,
            proxy_headers=proxy_headers,
            allow_redirects=False,
            timeout=timeout,
        )


def route_for(url: str) -> Route:
    """The route the environment gives requests to `url`."""
    return Route(proxy_for(url))


def new_session(
    route: Route,
    headers: dict[str, str],
    *,
    ca_bundle: Path | None,
    timeout: aiohttp.ClientTimeout,
    limit: int = 100,
) -> aiohttp.ClientSession:
    """A session along `route`, trusting the system's CAs and `ca_bundle`,
    sending `headers` and mira-batch's User-Agent on every request.

    Through a proxy, https is tunnelled with CONNECT, so the proxy sees only the
    host and port. aiohttp sends a session's default `headers` in the CONNECT
    request too, in the clear: the key must never be one of them; requests
    carry it.

    Raises:
        ConfigError: the CA bundle cannot be used.
    """
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        ttl_dns_cache=300,
        ssl=tls_context(ca_bundle),
    )
    proxy = route.proxy
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT, **headers},
        # Status, Retry-After and the error body are read by us, not raised.
        raise_for_status=False,
        proxy=None if proxy is None else proxy.url,
    )
