"""Webhook URL policy: which URLs a run's ``webhook`` may name (SSRF defence).

Checked when the URL is written (a run or cron create/patch: 422 ``Webhook host blocked: ...``,
nothing stored) and again before every delivery attempt (the host's addresses may have changed:
DNS rebinding); a delivery refused then is given up and logged.

Always refused, whatever the configuration: schemes other than http/https; credentials in the
URL; link-local addresses (169.254/16, fe80::/10), which hold the cloud metadata services;
the known metadata hostnames; 0/8, the TEST-NETs, 198.18/15, multicast, 240/4 and broadcast;
IPv4-mapped, NAT64 and unspecified IPv6 forms of any refused address. Configurable, as the
reference's ``webhooks.url`` block in ``langgraph.json`` (crons-webhooks.md 7.2):

- ``disable_loopback`` (default true): relative URLs, ``localhost`` names, 127/8 and ::1;
- ``disable_private_ips`` (default false): 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7;
- ``require_https`` (default false; true once a ``url`` block exists, as the reference);
- ``allowed_domains`` (``hooks.example.com``; ``*.corp.com`` matches subdomains, not the apex);
- ``allowed_ports``; ``max_url_length`` (default 4096; 2048 once a ``url`` block exists).

Every name is resolved (``getaddrinfo``) and every address it gives must pass; a name that does
not resolve is refused (``DNS resolution failed``), as in the reference.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from runtime.errors import InvalidRequest

_ALWAYS_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "169.254.0.0/16", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::/128", "fe80::/10", "ff00::/8", "64:ff9b::/96", "2001:db8::/32",
)]
_LOOPBACK = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128")]
_PRIVATE = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
)]
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "metadata.azure.com",
                   "instance-data", "instance-data.ec2.internal"}


class WebhookRefused(InvalidRequest):
    """The webhook URL is not allowed (422 when written); ``str(exc)`` says why."""


@dataclass(frozen=True)
class UrlPolicy:
    """The ``webhooks.url`` settings (module docstring)."""

    require_https: bool = False
    allowed_domains: tuple[str, ...] = ()
    allowed_ports: tuple[int, ...] = ()
    max_url_length: int = 4096
    disable_loopback: bool = True
    disable_private_ips: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, block: dict[str, Any] | None) -> UrlPolicy:
        """The policy of a ``webhooks.url`` block (None: the defaults without a block)."""
        if block is None:
            return cls()
        return cls(
            require_https=bool(block.get("require_https", True)),
            allowed_domains=tuple(block.get("allowed_domains") or ()),
            allowed_ports=tuple(int(p) for p in block.get("allowed_ports") or ()),
            max_url_length=int(block.get("max_url_length", 2048)),
            disable_loopback=bool(block.get("disable_loopback", True)),
            disable_private_ips=bool(block.get("disable_private_ips", False)),
        )


def _blocked(address: str, policy: UrlPolicy) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in _ALWAYS_BLOCKED):
        return "blocked IP range"
    if policy.disable_loopback and any(ip in net for net in _LOOPBACK):
        return "loopback IP range"
    if policy.disable_private_ips and any(ip in net for net in _PRIVATE):
        return "private IP range"
    return None


def _domain_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (blocking: call it in a worker thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, policy: UrlPolicy) -> tuple[str, int]:
    """Check ``url`` against ``policy``; returns ``(host, port)``. Blocking (DNS): call it
    in a worker thread.

    Raises:
        WebhookRefused: the URL is not allowed (the reference's detail texts).
    """
    if len(url) > policy.max_url_length:
        raise WebhookRefused(f"Webhook URL longer than {policy.max_url_length} characters")
    if url.startswith("/") or "://" not in url:
        raise WebhookRefused(
            "Loopback webhooks (relative URLs and localhost) are disabled by default. Use an "
            "absolute http(s) URL, or set webhooks.url.disable_loopback to false."
            if policy.disable_loopback else "Webhook URL must be an absolute http(s) URL")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused("Webhook URL is not a valid URL") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("http", "https"):
        raise WebhookRefused(f"Webhook host blocked: scheme '{scheme}' not allowed")
    if policy.require_https and scheme != "https":
        raise WebhookRefused("Webhook host blocked: https is required")
    if parts.username or parts.password:
        raise WebhookRefused("Webhook host blocked: credentials in the URL are not allowed")
    if not host:
        raise WebhookRefused("Webhook URL has no host")
    if host in _METADATA_HOSTS or host.endswith(".svc.cluster.local"):
        raise WebhookRefused("Webhook host blocked: metadata or cluster-internal host")
    if policy.disable_loopback and (host == "localhost" or host.endswith(".localhost")):
        raise WebhookRefused("Webhook host blocked: localhost address")
    if policy.allowed_domains and not _domain_allowed(host, policy.allowed_domains):
        raise WebhookRefused(f"Webhook host blocked: '{host}' is not an allowed domain")
    if policy.allowed_ports and port not in policy.allowed_ports:
        raise WebhookRefused(f"Webhook host blocked: port {port} is not allowed")
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError, ValueError):  # ValueError: a NUL in the name
        raise WebhookRefused("Webhook host blocked: DNS resolution failed") from None
    for address in addresses:
        reason = _blocked(address, policy)
        if reason is not None:
            raise WebhookRefused(f"Webhook host blocked: {reason}")
    return host, port
