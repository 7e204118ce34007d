"""scripts/rewrite_imports.py: code written against the old relay/ layout, rewritten."""

# rewrite_imports: leave this file

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "rewrite_imports.py"

spec = importlib.util.spec_from_file_location("rewrite_imports", SCRIPT)
assert spec is not None and spec.loader is not None
rewrite_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rewrite_imports)
rewrite = rewrite_imports.rewrite

OLD = '''\
from relay.bus import publish
from relay.ids import new_id, looks_like_id
from relay import lifecycle  # noqa: E402
from relay.metrics import record_attempt, record_delivery_final
from relay.metrics import IngestMetrics, metrics_view
from relay.retention import id_boundary, purge_expired
from relay.settings import parse_retry_schedule
from hooks.api import SLUG_PATTERN
import relay.database
from relay.api import (
    iso,
    paginate,
)

log = logging.getLogger("relay.outage")
MIDDLEWARE = ["relay.middleware.DatabaseUnavailableMiddleware"]
MODELS = ["relay.models", "hooks.models"]
monkeypatch.setattr("relay.outage.time.monotonic", clock)
relay.database.start_database
# see relay/handler.py; relay/asgi.py stays
'''

NEW = '''\
from kernel.bus import publish
from kernel.ids import new_id, looks_like_id
from kernel import lifecycle  # noqa: E402
from dispatch.metrics import record_attempt, record_delivery_final
from hooks.metrics import IngestMetrics
from kernel.metrics import metrics_view
from kernel.ids import id_boundary
from relay.retention import purge_expired
from relay.settings import parse_retry_schedule
from hooks.models import SLUG_PATTERN
import kernel.database
from kernel.api import (
    iso,
    paginate,
)

log = logging.getLogger("relay.outage")
MIDDLEWARE = ["kernel.middleware.DatabaseUnavailableMiddleware"]
MODELS = ["kernel.models", "hooks.models"]
monkeypatch.setattr("kernel.outage.time.monotonic", clock)
kernel.database.start_database
# see kernel/handler.py; relay/asgi.py stays
'''


def test_old_paths_become_new_ones() -> None:
    assert rewrite(OLD) == NEW


def test_rewriting_twice_changes_nothing_more() -> None:
    assert rewrite(NEW) == NEW


def test_logger_names_and_wiring_modules_are_left_alone() -> None:
    text = ('getLogger("relay.request")\nfrom relay.urls import urlpatterns\n'
            'RELAY = "relay.asgi:application"\n')
    assert rewrite(text) == text


def test_the_command_rewrites_files_and_check_reports_them(tmp_path: Path) -> None:
    old = tmp_path / "old.py"
    old.write_text("from relay.crypto import hash_token\n")
    check = subprocess.run([sys.executable, str(SCRIPT), "--check", str(tmp_path)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 1 and "old.py" in check.stdout
    assert old.read_text() == "from relay.crypto import hash_token\n"
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], check=True, capture_output=True)
    assert old.read_text() == "from kernel.crypto import hash_token\n"


def test_this_tree_has_no_old_path_left() -> None:
    check = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
