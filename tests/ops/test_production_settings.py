"""RELAY_ENV=production refuses to start on an unsafe configuration, saying what to set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.ops.conftest import ROOT

GOOD = {
    "RELAY_ENV": "production",
    "RELAY_SECRET_KEY": "k" * 48,
    "RELAY_ALLOWED_HOSTS": "relay.example.com",
    "RELAY_DATABASE_URL": "postgresql://relay@127.0.0.1:1/relay",
}
SETUP = ("import django; django.setup(); from django.conf import settings; "
         "print('cookies', settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
         "settings.DEBUG, settings.SECURE_PROXY_SSL_HEADER)")

CASES = [
    pytest.param({"RELAY_SECRET_KEY": None}, "RELAY_SECRET_KEY is required", id="no-secret-key"),
    pytest.param({"RELAY_SECRET_KEY": "short"}, "RELAY_SECRET_KEY is too short", id="short-key"),
    pytest.param({"RELAY_DEBUG": "true"}, "RELAY_DEBUG must be off", id="debug-on"),
    pytest.param({"RELAY_ALLOWED_HOSTS": None}, "RELAY_ALLOWED_HOSTS is required", id="no-hosts"),
    pytest.param({"RELAY_ALLOWED_HOSTS": " "}, "RELAY_ALLOWED_HOSTS is required", id="blank-hosts"),
    pytest.param({"RELAY_ENV": "prod"}, "use development or production", id="unknown-env"),
]


def _env(changes: dict[str, str | None], tmp_path) -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(GOOD)
    env["RELAY_DATA_DIR"] = str(tmp_path)
    env["DJANGO_SETTINGS_MODULE"] = "relay.settings"
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_each_unsafe_setting_is_refused_with_what_to_set(tmp_path):
    started = [(case.values, _start([sys.executable, "-c", SETUP], _env(case.values[0], tmp_path)))
               for case in CASES]
    started.append(((None, None), _start([sys.executable, "manage.py", "check"],
                                         _env({"RELAY_DEBUG": "on"}, tmp_path))))
    for (changes, expected), process in started:
        out, err = process.communicate(timeout=60)
        assert process.returncode != 0, (changes, out, err)
        assert "ImproperlyConfigured" in err
        assert (expected or "RELAY_DEBUG must be off") in err, err[-2000:]
    # Nothing written in the data dir (no generated key in production).
    assert not (tmp_path / "secret_key").exists()


def test_a_complete_production_configuration_starts_with_secure_cookies(tmp_path):
    done = subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=_env({}, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cookies", "True", "True", "False", "None"]


def test_development_needs_nothing_and_trusts_no_forwarded_proto_by_default(tmp_path):
    env = _env({"RELAY_ENV": None, "RELAY_SECRET_KEY": None, "RELAY_ALLOWED_HOSTS": None,
                "RELAY_TRUST_X_FORWARDED_PROTO": "true"}, tmp_path)
    done = subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in done.stdout
    assert "cookies False False False" in done.stdout
    assert (tmp_path / "secret_key").exists()
