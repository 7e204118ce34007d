"""`relay`: the command-line client of a Relay server (entry point and the short commands).

Exit codes: 0 done, 1 failed (the message says what to do), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from relaycli import config, output
from relaycli.client import Api, explain, unreachable, user_agent
from relaycli.errors import EXIT_OK, EXIT_USAGE, CliError

Handler = Callable[[argparse.Namespace], int]


def _api() -> Api:
    return Api(config.credentials())


# --- login -----------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must start with http:// or https:// (got {url!r})",
                       EXIT_USAGE)
    try:
        response = httpx.get(f"{url}/api/v1/sources", params={"limit": 1}, timeout=15,
                             headers={"Authorization": f"Bearer {args.token}",
                                      "User-Agent": user_agent()})
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from None
    if response.status_code == 401:
        raise CliError(f"Relay at {url} refused this token ({explain(response)}); create one "
                       "with: python manage.py createtoken --name laptop")
    if response.status_code != 200:
        raise CliError(f"{url} answered {response.status_code} ({explain(response)}); is this "
                       "Relay's address?")
    path = config.save(config.Credentials(url, args.token))
    output.say(f"Logged in to {url}; saved to {path}")
    return EXIT_OK


# --- events, deliveries ----------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    api = _api()
    params = {"source": args.source, "event_type": args.type, "since": args.since,
              "until": args.until}
    events = list(api.pages("/api/v1/events", params, args.limit))
    if args.json:
        output.print_json(events)
        return EXIT_OK
    if not events:
        output.say("No events.")
        return EXIT_OK
    output.say(output.table(
        [[e["id"], output.clock(e["received_at"]), e.get("source") or "-",
          e.get("event_type") or "-", f"{e['size']} B"] for e in events],
        ["ID", "RECEIVED", "SOURCE", "TYPE", "SIZE"]))
    return EXIT_OK


def cmd_event(args: argparse.Namespace) -> int:
    event = _api().get(f"/api/v1/events/{args.id}")
    if args.json:
        output.print_json(event)
        return EXIT_OK
    colour = output.use_colour(sys.stdout)
    output.say(output.paint(f"{event['id']}  {event.get('event_type') or '-'}", "bold", colour))
    output.say(f"source     {event.get('source') or '-'}")
    output.say(f"received   {event['received_at']}")
    output.say(f"dedup key  {event.get('dedup_key') or '-'}")
    output.say(f"request    {event['method']} {event['content_type']} {event['size']} B")
    for name, value in sorted(event["headers"].items()):
        output.say(output.paint(f"  {name}: {value}", "dim", colour))
    output.say("")
    output.say(event["body"] if event["body"] is not None
               else f"(binary body, base64) {event['body_base64']}")
    deliveries = event.get("deliveries") or []
    output.say("")
    if not deliveries:
        output.say("No deliveries.")
    else:
        output.say(output.table(
            [[d["id"], d["endpoint_id"], d["status"], str(d["attempts_count"]),
              str(d["last_status_code"] or d["last_error"] or "-")] for d in deliveries],
            ["DELIVERY", "ENDPOINT", "STATUS", "ATTEMPTS", "LAST"]))
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    payload = {"endpoint_id": args.endpoint} if args.endpoint else {}
    answer = _api().post(f"/api/v1/events/{args.event_id}/replay", json=payload)
    if args.json:
        output.print_json(answer)
    else:
        output.say(f"Replaying {args.event_id}: {answer['count']} new deliveries "
                   f"{' '.join(answer['delivery_ids'])}".rstrip())
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    answer = _api().post(f"/api/v1/deliveries/{args.delivery_id}/retry")
    if args.json:
        output.print_json(answer)
    else:
        output.say(f"Retrying {answer['id']} now (status {answer['status']}, "
                   f"{answer['attempts_count']} attempts so far)")
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    api = _api()
    source = api.source_by_slug(args.source)
    answer = api.post(f"/api/v1/sources/{source['id']}/trigger", json={"fixture": args.fixture})
    if args.json:
        output.print_json(answer)
    else:
        output.say(f"Stored {args.fixture} as event {answer['id']} on source {args.source}")
    return EXIT_OK


def cmd_fixtures(args: argparse.Namespace) -> int:
    fixtures = _api().get("/api/v1/fixtures")["data"]
    if args.json:
        output.print_json(fixtures)
    else:
        output.say(output.table([[f["name"], f["event_type"], f["description"]]
                                 for f in fixtures], ["FIXTURE", "EVENT TYPE", "WHAT"]))
    return EXIT_OK


# --- long-running ----------------------------------------------------------------------------


def _stop_on_signals() -> None:
    """SIGTERM stops like Ctrl-C, and Ctrl-C works even when the shell started the
    command with SIGINT ignored (in the background)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_listen(args: argparse.Namespace) -> int:
    from relaycli.listen import ListenOptions, run

    credentials = config.credentials()
    if not args.forward_to.startswith(("http://", "https://")):
        raise CliError(f"--forward-to must be an http:// or https:// URL (got "
                       f"{args.forward_to!r})", EXIT_USAGE)
    options = ListenOptions(forward_to=args.forward_to, sources=args.source or [],
                            event_types=args.event_type or [], name=args.name, json=args.json)
    _stop_on_signals()
    try:
        asyncio.run(run(credentials, options))
    except KeyboardInterrupt:
        output.say("Stopped. The endpoint and its queue stay; resume with --name.",
                   sys.stderr)
    return EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    from relaycli.tail import run

    credentials = config.credentials()
    _stop_on_signals()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(credentials, args.source or [], args.type or [], args.json, args.stats))
    return EXIT_OK


# --- the parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="Command-line client of a Relay server.",
        epilog="Start with: relay login --url http://127.0.0.1:8000 --token rly_...")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, json_flag: bool = True,
            ) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        if json_flag:
            command.add_argument("--json", action="store_true", help="output JSON for scripts")
        return command

    login = add("login", cmd_login, "check a token against a Relay server and keep both",
                json_flag=False)
    login.add_argument("--url", required=True, help="Relay's address, e.g. http://127.0.0.1:8000")
    login.add_argument("--token", required=True, help="an API token (rly_...)")

    listen = add("listen", cmd_listen,
                 "forward the events Relay receives to a local URL (one line per delivery)")
    listen.add_argument("--forward-to", required=True, metavar="URL",
                        help="where to send each delivery, e.g. http://127.0.0.1:3000/webhooks")
    listen.add_argument("--source", action="append", metavar="SLUG",
                        help="only events of this source (repeatable)")
    listen.add_argument("--event-type", action="append", metavar="TYPE",
                        help="only this event type, or a prefix ending in * (repeatable)")
    listen.add_argument("--name", help="resume the listener of this name (its queued "
                                       "deliveries come first); default: a new one")

    tail = add("tail", cmd_tail, "show Relay's live feed")
    tail.add_argument("--source", action="append", metavar="SLUG",
                      help="only messages about this source's events (repeatable)")
    tail.add_argument("--type", action="append", metavar="TYPE",
                      help="only this message type, e.g. delivery.failed (repeatable)")
    tail.add_argument("--stats", action="store_true", help="also the stats every second")

    events = add("events", cmd_events, "list recent events, newest first")
    events.add_argument("--source", metavar="SLUG")
    events.add_argument("--type", metavar="TYPE", help="event type")
    events.add_argument("--since", metavar="TIME", help="ISO 8601, e.g. 2026-11-26T05:00:00Z")
    events.add_argument("--until", metavar="TIME")
    events.add_argument("--limit", type=int, default=20, help="how many (default 20)")

    event = add("event", cmd_event, "show one event: headers, body, deliveries")
    event.add_argument("id", metavar="EVENT_ID")

    replay = add("replay", cmd_replay, "deliver an event again (new deliveries)")
    replay.add_argument("event_id", metavar="EVENT_ID")
    replay.add_argument("--endpoint", metavar="ENDPOINT_ID", help="to this endpoint only")

    retry = add("retry", cmd_retry, "try a delivery again now")
    retry.add_argument("delivery_id", metavar="DELIVERY_ID")

    trigger = add("trigger", cmd_trigger,
                  "store a sample webhook on a source, signed as its provider would")
    trigger.add_argument("fixture", metavar="FIXTURE", help="e.g. github.push (see relay fixtures)")
    trigger.add_argument("--source", required=True, metavar="SLUG")

    add("fixtures", cmd_fixtures, "list the sample webhooks trigger can send")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) < 1:
        output.say("relay: --limit must be at least 1", sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except CliError as problem:
        output.say(f"relay: {problem}", sys.stderr)
        return problem.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
