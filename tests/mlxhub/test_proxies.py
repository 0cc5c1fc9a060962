"""X-Forwarded-Proto and X-Forwarded-For are believed only from MLXHUB_TRUSTED_PROXIES (default: this machine)."""

from __future__ import annotations

import json

import pytest
from django.test import Client, RequestFactory

from mlxhub.proxies import client_ip
from tests.mlxhub.processes import clean_env, python

# A secure deploy (MLXHUB_SECURE=1) answering one request from an address: the status and where it redirects.
ASK = """
import django, json, os, sys
os.environ['DJANGO_SETTINGS_MODULE'] = 'mlxhub.settings'
django.setup()
from django.test import Client
remote, proto = sys.argv[1], sys.argv[2]
headers = {'HTTP_X_FORWARDED_PROTO': proto} if proto else {}
response = Client(REMOTE_ADDR=remote).get('/login/', HTTP_HOST='hub.example.com', **headers)
print(json.dumps([response.status_code, response.get('Location', '')]))
"""


def ask(tmp_path, remote: str, proto: str, **extra: str) -> tuple[int, str]:
    env = clean_env(tmp_path, MLXHUB_SECURE="1", MLXHUB_ALLOWED_HOSTS="hub.example.com", **extra)
    result = python(env, f"import sys; sys.argv = ['ask', {remote!r}, {proto!r}]\n{ASK}")
    assert result.returncode == 0, result.stderr
    status, location = json.loads(result.stdout.strip().splitlines()[-1])
    return status, location


def test_a_secure_deploy_ignores_x_forwarded_proto_from_an_untrusted_address(tmp_path):
    assert ask(tmp_path, "203.0.113.7", "https") == (301, "https://hub.example.com/login/")


def test_a_secure_deploy_believes_x_forwarded_proto_from_the_proxy_on_this_machine(tmp_path):
    assert ask(tmp_path, "127.0.0.1", "https")[0] == 200
    assert ask(tmp_path, "127.0.0.1", "")[0] == 301  # the proxy says nothing: plain http


def test_a_configured_proxy_range_is_believed_and_this_machine_no_longer_is(tmp_path):
    assert ask(tmp_path, "10.1.2.3", "https", MLXHUB_TRUSTED_PROXIES="10.0.0.0/8")[0] == 200
    assert ask(tmp_path, "127.0.0.1", "https", MLXHUB_TRUSTED_PROXIES="10.0.0.0/8")[0] == 301


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("203.0.113.7", "10.0.0.1", "203.0.113.7"),  # not from a proxy: its X-Forwarded-For is the client's say-so
        ("127.0.0.1", "198.51.100.20", "198.51.100.20"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.20", "198.51.100.20"),  # the forged left part is not believed
        ("127.0.0.1", "", "127.0.0.1"),
    ],
)
def test_the_client_address_is_the_nearest_untrusted_one(remote, forwarded, expected):
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    assert client_ip(request) == expected


def test_the_pages_build_https_links_only_for_a_trusted_proxy(bob, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    trusted, untrusted = Client(REMOTE_ADDR="127.0.0.1"), Client(REMOTE_ADDR="203.0.113.7")
    for browser in (trusted, untrusted):
        browser.force_login(bob)

    assert "https://testserver" in trusted.get("/keys/", HTTP_X_FORWARDED_PROTO="https").content.decode()
    assert "https://testserver" not in untrusted.get("/keys/", HTTP_X_FORWARDED_PROTO="https").content.decode()
