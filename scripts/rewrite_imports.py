#!/usr/bin/env python3
"""Rewrite old import paths to new ones, in any file: for code written before the split of
`relay/` into the project wiring (`relay/`) and the kernel (`kernel/`).

    python scripts/rewrite_imports.py                 # every tracked .py/.md/.toml/.yaml file
    python scripts/rewrite_imports.py FILE_OR_DIR...  # these only
    python scripts/rewrite_imports.py --check ...     # list what would change, exit 1 if any

What it rewrites:

- `from relay.<module> import a, b` and `import relay.<module>` for every module that moved
  (`MODULES`), and `from relay import <module>`;
- names that moved to another module than the rest of theirs (`SYMBOLS`): an import line
  naming some of them is split into one import per target module;
- dotted paths in strings and text (`"relay.middleware.RequestLog"`, a monkeypatch target
  `"relay.outage.time.monotonic"`, the model module `"relay.models"`) and file paths
  (`relay/handler.py`). Logger names (`relay.request`, `relay.outage`, ...) are left alone:
  a dotted path is rewritten only when a name follows the module, or for the exact module
  strings in `EXACT_STRINGS`.

It is idempotent: running it twice changes nothing the second time. A file that holds
the line `# rewrite_imports: leave this file` is skipped (its own tests' sample code).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

MODULES: dict[str, str] = {
    f"relay.{name}": f"kernel.{name}"
    for name in ("database", "ids", "crypto", "tokens", "models", "bus", "outage", "limits",
                 "logs", "metrics", "handler", "exchange", "api", "health", "middleware",
                 "commands", "lifecycle",
                 # Kernel-level modules that other branches added to relay/ meanwhile: after
                 # merging, `git mv relay/<name>.py kernel/` for each, then run this script.
                 "error_codes", "hops", "json_depth", "pglayer", "partitions", "supervisor", "openapi_docs")
}
"""Whole modules moved with `git mv` (same contents, new package). Modules of the wiring
stay in relay/: settings, urls, asgi, apps, retention, migrations_runner, management and
webserver. The supervisor is generic process supervision that the dispatcher command uses
too, so it is kernel; so is partitions.py (id bounds and day partitions, which ingest and
the APIs use: it names the partitioned tables but imports no app)."""

SYMBOLS: dict[tuple[str, str], str] = {
    **{("kernel.metrics", name): "dispatch.metrics"
       for name in ("ATTEMPTS", "ATTEMPT_DURATION", "DELIVERIES", "record_attempt",
                    "record_delivery_final", "GAUGE_QUERY", "read_database_gauges",
                    "circuit_cooldown_seconds")},
    **{("kernel.metrics", name): "hooks.metrics"
       for name in ("INGEST_REQUESTS", "INGEST_DURATION", "INGEST_RESULTS", "UNKNOWN_SOURCE",
                    "MAX_SOURCE_LABELS", "IngestMetrics", "record_ingest", "ingest_result",
                    "source_label")},
    ("relay.retention", "id_boundary"): "kernel.ids",
    ("hooks.api", "SLUG_PATTERN"): "hooks.models",
    ("kernel.database", "MODEL_MODULES"): "relay.settings",
}
"""Names that left their module (looked up after MODULES has been applied)."""

EXACT_STRINGS: dict[str, str] = {"relay.models": "kernel.models"}
"""Module paths that appear alone in strings (Tortoise's model module list)."""

LEAVE_MARKER = "# rewrite_imports: " + "leave this file"

SUFFIXES = (".py", ".pyi", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt", ".sh")

_MODULE_ALT = "|".join(re.escape(old) for old in sorted(MODULES, key=len, reverse=True))
_DOTTED = re.compile(rf"(?<![\w.])({_MODULE_ALT})(?=[.:][A-Za-z_])")
_PATH = re.compile(r"(?<![\w/])relay/(" + "|".join(
    old.split(".", 1)[1] for old in MODULES) + r")\.py\b")
_IMPORT_MODULE = re.compile(rf"^(\s*)import ({_MODULE_ALT})\b", re.M)
_FROM = re.compile(r"^(?P<indent>[ \t]*)from (?P<module>[\w.]+) import (?P<names>\([^)]*\)|[^\n]*)",
                   re.M)
_EXACT = re.compile(r"""(["'])(""" + "|".join(re.escape(s) for s in EXACT_STRINGS) + r""")\1""")


def _split_names(text: str) -> tuple[list[str], str]:
    """`a, b as c  # noqa` -> (["a", "b as c"], "  # noqa")."""
    comment = ""
    if not text.startswith("("):
        body, hash_, rest = text.partition("#")
        if hash_:
            comment = "  #" + rest
        text = body
    else:
        text = text[1:-1]
        text = re.sub(r"#[^\n]*", "", text)
    names = [part.strip() for part in text.replace("\n", " ").split(",") if part.strip()]
    return names, comment


def _rewrite_from(match: re.Match[str]) -> str:
    indent, module, raw = match.group("indent"), match.group("module"), match.group("names")
    if module == "relay":
        names, comment = _split_names(raw)
        moved = [n for n in names if f"relay.{n.split(' as ')[0]}" in MODULES]
        if not moved:
            return match.group(0)
        lines = []
        for name in moved:
            base, _, alias = name.partition(" as ")
            target = MODULES[f"relay.{base}"]
            package, _, leaf = target.rpartition(".")
            lines.append(f"{indent}from {package} import {leaf}"
                         + (f" as {alias}" if alias else "" if leaf == base else f" as {base}"))
        kept = [n for n in names if n not in moved]
        if kept:
            lines.insert(0, f"{indent}from relay import {', '.join(kept)}")
        lines[-1] += comment
        return "\n".join(lines)
    new_module = MODULES.get(module, module)
    names, comment = _split_names(raw)
    if not any((new_module, n.split(" as ")[0]) in SYMBOLS for n in names):
        if new_module == module:
            return match.group(0)
        return f"{indent}from {new_module} import {raw}"
    groups: dict[str, list[str]] = {}
    for name in names:
        target = SYMBOLS.get((new_module, name.split(" as ")[0]), new_module)
        groups.setdefault(target, []).append(name)
    lines = [f"{indent}from {target} import {', '.join(group)}" for target, group in groups.items()]
    lines[-1] += comment
    return "\n".join(lines)


def rewrite(text: str) -> str:
    text = _FROM.sub(_rewrite_from, text)
    text = _IMPORT_MODULE.sub(lambda m: f"{m.group(1)}import {MODULES[m.group(2)]}", text)
    text = _DOTTED.sub(lambda m: MODULES[m.group(1)], text)
    text = _PATH.sub(lambda m: f"kernel/{m.group(1)}.py", text)
    text = _EXACT.sub(lambda m: f"{m.group(1)}{EXACT_STRINGS[m.group(2)]}{m.group(1)}", text)
    return text


def tracked_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                            check=True).stdout.split()
    return [root / name for name in listed]


def candidates(paths: list[str]) -> list[Path]:
    if not paths:
        root = Path(__file__).resolve().parent.parent
        files = tracked_files(root)
    else:
        files = []
        for given in map(Path, paths):
            files += sorted(given.rglob("*")) if given.is_dir() else [given]
    this = Path(__file__).resolve()
    return [f for f in files if f.is_file() and f.suffix in SUFFIXES and f.resolve() != this
            and ".venv" not in f.parts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="files or folders (default: every tracked file)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if needed")
    args = parser.parse_args(argv)
    changed = []
    for path in candidates(args.paths):
        try:
            old = path.read_text()
        except UnicodeDecodeError:
            continue
        if LEAVE_MARKER in old:
            continue
        new = rewrite(old)
        if new != old:
            changed.append(path)
            if not args.check:
                path.write_text(new)
    for path in changed:
        print(("would rewrite " if args.check else "rewrote ") + str(path))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
