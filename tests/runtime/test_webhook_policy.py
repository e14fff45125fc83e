"""runtime/webhooks/policy.py: what a webhook URL may name. IP literals only (no DNS needed),
plus names this machine cannot resolve."""

from __future__ import annotations

import pytest

from runtime.webhooks.policy import UrlPolicy, WebhookRefused, check_url

pytestmark = pytest.mark.timeout(20)

OPEN = UrlPolicy(disable_loopback=False)


@pytest.mark.parametrize(("url", "policy", "reason"), [
    ("http://127.0.0.1/", UrlPolicy(), "loopback IP range"),
    ("http://[::1]/", UrlPolicy(), "loopback IP range"),
    ("http://[::ffff:127.0.0.1]/", UrlPolicy(), "loopback IP range"),
    ("http://localhost:8000/", UrlPolicy(), "localhost address"),
    ("http://169.254.169.254/", OPEN, "blocked IP range"),
    ("http://[fe80::1]/", OPEN, "blocked IP range"),
    ("http://0.0.0.0/", OPEN, "blocked IP range"),
    ("http://224.0.0.1/", OPEN, "blocked IP range"),
    ("http://192.0.2.1/", OPEN, "blocked IP range"),
    ("http://metadata.google.internal/", OPEN, "metadata"),
    ("http://api.svc.cluster.local/", OPEN, "cluster-internal"),
    ("http://10.1.2.3/", UrlPolicy(disable_private_ips=True), "private IP range"),
    ("http://192.168.1.1/", UrlPolicy(disable_private_ips=True), "private IP range"),
    ("gopher://127.0.0.1/", OPEN, "scheme 'gopher' not allowed"),
    ("http://10.1.2.3/", UrlPolicy(require_https=True), "https is required"),
    ("https://10.1.2.3:8443/", UrlPolicy(allowed_ports=(443,)), "port 8443"),
    ("https://10.1.2.3/", UrlPolicy(allowed_domains=("hooks.example.com",)), "allowed domain"),
    ("https://corp.com/", UrlPolicy(allowed_domains=("*.corp.com",)), "allowed domain"),
    ("http://u:p@10.1.2.3/", OPEN, "credentials"),
    ("http://a\x00b.example/", OPEN, "DNS resolution failed"),
    ("http://nowhere.invalid/", OPEN, "DNS resolution failed"),
    ("http://[::1", OPEN, "not a valid URL"),
    ("http://1.2.3.4:99999/", OPEN, "not a valid URL"),
    ("/relative", UrlPolicy(), "Loopback webhooks"),
    ("http://10.1.2.3/" + "x" * 5000, UrlPolicy(), "longer than 4096"),
])
def test_refused(url: str, policy: UrlPolicy, reason: str) -> None:
    with pytest.raises(WebhookRefused) as err:
        check_url(url, policy)
    assert reason in str(err.value)


def test_allowed() -> None:
    assert check_url("http://127.0.0.1:9/hook?x=1", OPEN) == ("127.0.0.1", 9)
    assert check_url("http://10.1.2.3/", UrlPolicy()) == ("10.1.2.3", 80)  # private: allowed
    assert check_url("https://8.8.8.8/", UrlPolicy(require_https=True)) == ("8.8.8.8", 443)


def test_a_url_block_tightens_the_defaults() -> None:
    policy = UrlPolicy.from_config({})
    assert policy.require_https and policy.max_url_length == 2048 and policy.disable_loopback
    assert UrlPolicy.from_config(None) == UrlPolicy()
