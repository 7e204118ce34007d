"""Succeeded attempts are logged only with RELAY_ATTEMPT_LOG=all; failures always (as far
as RELAY_LOG_LEVEL lets them through)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys


def _attempt_logger_level(**env: str) -> int:
    code = ("from django.conf import settings; import django; django.setup(); "
            "import logging; print(logging.getLogger('relay.attempt').getEffectiveLevel())")
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "relay.settings", **env}
    for name in ("RELAY_ATTEMPT_LOG", "RELAY_LOG_LEVEL"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_succeeded_attempts_are_logged_only_when_asked():
    assert _attempt_logger_level() == logging.WARNING
    assert _attempt_logger_level(RELAY_ATTEMPT_LOG="all") == logging.INFO
    assert _attempt_logger_level(RELAY_ATTEMPT_LOG="all", RELAY_LOG_LEVEL="error") == logging.ERROR


def test_an_unknown_attempt_log_setting_is_refused():
    code = "from django.conf import settings; import django; django.setup()"
    done = subprocess.run([sys.executable, "-c", code], timeout=60, check=False,
                          capture_output=True, text=True,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "relay.settings",
                               "RELAY_ATTEMPT_LOG": "some"})
    assert done.returncode != 0
    assert "RELAY_ATTEMPT_LOG='some': use failures or all" in done.stderr
