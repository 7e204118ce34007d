"""compose.yaml is real: its commands, environment names, ports and health checks run on
this machine (PostgreSQL and Redis local, everything on 127.0.0.1 instead of 0.0.0.0)."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.management import get_commands

from tests.ops import compose_file
from tests.ops.conftest import ROOT, Process, run
from tests.ops.metrics_text import samples, value
from tests.servers import free_port, wait_until

VARIABLES = {
    "RELAY_SECRET_KEY": "compose-test-secret-key-0123456789abcdef",
    "RELAY_ALLOWED_HOSTS": "relay.example.com",
    "POSTGRES_PASSWORD": "not-used-here",
}
HOST = "relay.example.com"  # what a request through the proxy carries
BURST = 150


def test_compose_refuses_to_start_without_its_secrets():
    for missing in VARIABLES:
        with pytest.raises(compose_file.MissingVariable, match=missing):
            compose_file.load({key: value for key, value in VARIABLES.items() if key != missing})


def test_every_setting_is_in_compose_with_a_comment():
    settings_source = (ROOT / "relay" / "settings.py").read_text()
    names = set(re.findall(r'_env\w*\(\s*"(RELAY_[A-Z_]+)"', settings_source))
    assert len(names) > 20
    text = compose_file.COMPOSE_PATH.read_text().splitlines()
    shown = compose_file.raw()["x-relay-environment"]
    assert names <= set(shown), f"missing from compose.yaml: {sorted(names - set(shown))}"
    for name in shown:
        index = next(i for i, line in enumerate(text) if line.strip().startswith(f"{name}:"))
        assert text[index - 1].strip().startswith("#"), f"{name} has no comment above it"


def test_compose_shape():
    compose = compose_file.load(VARIABLES)
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "dispatcher"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["redis"]["command"] == ["redis-server", "--save", "", "--appendonly", "no"]
    assert services["migrate"]["restart"] == "no"
    assert services["dispatcher"]["deploy"]["replicas"] == 2
    assert services["dispatcher"]["command"] == ["python", "manage.py", "dispatch"]
    web = services["web"]["command"]
    assert compose_file.option_value(web, "--workers") == "4"
    for flag in ("--proxy-headers", "--no-access-log"):
        assert flag in web
    assert compose_file.option_value(web, "--http") == "httptools"
    assert compose_file.option_value(web, "--loop") == "uvloop"
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["web"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "redis": {"condition": "service_healthy"}}
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert set(compose["volumes"]) == {"pgdata", "relay-metrics"}
    for name in ("migrate", "web", "dispatcher"):
        env = services[name]["environment"]
        assert env["RELAY_ENV"] == "production"
        assert env["RELAY_METRICS_DIR"] == "/var/lib/relay/metrics"
        assert "relay-metrics:/var/lib/relay/metrics" in services[name]["volumes"]
        assert services[name]["image"] == "relay:latest"


def test_dockerfile_runs_as_a_user_from_python_311_slim():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
    assert re.search(r"^USER relay$", dockerfile, re.M)


def _local_env(service: dict, *, database_url: str, redis_url: str, metrics_dir: str
               ) -> dict[str, str]:
    """The service's environment with compose's host names swapped for local servers."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update({key: str(value) for key, value in service["environment"].items()})
    assert urlsplit(env["RELAY_DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["RELAY_REDIS_URL"]).hostname == "redis"
    env.update({
        "RELAY_DATABASE_URL": database_url,
        "RELAY_REDIS_URL": redis_url,
        "RELAY_METRICS_DIR": metrics_dir,
        "RELAY_DATA_DIR": tempfile.mkdtemp(prefix="relay-compose-data-"),
        # The sink below listens on loopback, which the SSRF guard refuses unless allowed.
        "RELAY_TARGET_ALLOWLIST": "127.0.0.1",
        "RELAY_RETRY_SCHEDULE": "0.2,0.4,0.8",
        "RELAY_SOURCE_CACHE_SECONDS": "0.2",
    })
    return env


def _healthcheck(service: dict, replace: dict[str, str]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [replace.get(word, word) for word in test[1:]]
    for old, new in replace.items():
        command = [word.replace(old, new) for word in command]
    return compose_file.local(command)


def _pg_bin(name: str) -> str:
    from tests.servers import _postgres_bin

    return str(_postgres_bin() / name)


async def _run(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    code, out, err = await run(command, env)
    return code, out + err


class Sink:
    """A subscriber on 127.0.0.1 answering 204 and noting each `webhook-id` it gets."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.port = free_port()

    async def start(self) -> None:
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            await request.read()
            self.ids.append(request.headers["webhook-id"])
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", receive)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()


async def test_compose_services_run_here(database, redis_url, tmp_path):
    compose = compose_file.load(VARIABLES)
    services = compose["services"]
    database_url = os.environ["RELAY_DATABASE_URL"]
    metrics_dir = str(tmp_path / "metrics")
    env = {name: _local_env(services[name], database_url=database_url, redis_url=redis_url,
                            metrics_dir=metrics_dir)
           for name in ("migrate", "web", "dispatcher")}
    redis = urlsplit(redis_url)
    pg = urlsplit(database_url)

    # Health checks of the data services, pointed at the local servers.
    code, out = await _run(_healthcheck(services["redis"], {"6379": str(redis.port)}), env["web"])
    assert code == 0 and "PONG" in out, out
    pg_check = _healthcheck(services["postgres"], {"5432": str(pg.port), "relay": "postgres"})
    pg_check[0] = _pg_bin("pg_isready")
    code, out = await _run(pg_check, env["web"])
    assert code == 0, out

    # migrate: the one-shot service exits 0 (the schema is current: nothing to apply).
    code, out = await _run(compose_file.local(services["migrate"]["command"]), env["migrate"])
    assert code == 0, out
    assert "schema is current" in out or "Migrations applied" in out

    # The documented token command, run in the migrate service's environment.
    code, out, err = await run(compose_file.local(
        ["python", "manage.py", "createtoken", "--name", "compose-test", "--scope", "admin"]),
        env["migrate"])
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert token.startswith("rly_")
    admin = {"Authorization": f"Bearer {token}", "Host": HOST}

    # web: the compose command with 2 workers on a free loopback port.
    port = free_port()
    web_command = compose_file.with_option(services["web"]["command"], "--host", "127.0.0.1")
    web_command = compose_file.with_option(web_command, "--port", str(port))
    web_command = compose_file.with_option(web_command, "--workers", "2")
    web = Process("compose-web", compose_file.local(web_command), env["web"])
    processes = [web]
    sink = Sink()
    try:
        base = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(web.wait_http, f"{base}/readyz", 90)
        code, out = await _run(_healthcheck(services["web"], {"8000": str(port)}), env["web"])
        assert code == 0, out

        async with httpx.AsyncClient(base_url=base, timeout=15) as http:
            created = await http.post("/api/v1/sources", headers=admin, json={
                "slug": "compose-burst", "verification": {"kind": "none"}})
            assert created.status_code == 201, created.text
            assert created.json()["ingest_url"] == f"http://{HOST}/in/compose-burst"

            if "dispatch" not in get_commands():
                accepted = await _burst(http, 40)
                await _metrics_add_up(http, admin, 40)
                pytest.skip("`manage.py dispatch` does not exist yet: migrate, web, health "
                            "checks and metrics were checked; deliveries were not")

            await sink.start()
            endpoint = await http.post("/api/v1/endpoints", headers=admin, json={
                "url": f"http://127.0.0.1:{sink.port}/hook", "sources": ["compose-burst"]})
            assert endpoint.status_code == 201, endpoint.text
            for replica in range(services["dispatcher"]["deploy"]["replicas"]):
                processes.append(Process(f"compose-dispatcher-{replica}", compose_file.local(
                    services["dispatcher"]["command"]), env["dispatcher"]))

            accepted = await _burst(http, BURST)
            await wait_until(lambda: set(accepted) <= set(sink.ids), timeout=90,
                             message=f"{BURST} deliveries to the sink")
            await _metrics_add_up(http, admin, BURST)
        for process in processes:
            assert process.alive(), f"{process.name} died:\n{process.output()[-3000:]}"
    finally:
        if hasattr(sink, "runner"):
            await sink.stop()
        codes = {process.name: process.stop() for process in processes}
    assert set(codes.values()) == {0}, (codes, [p.output()[-2000:] for p in processes])


async def _burst(http: httpx.AsyncClient, count: int) -> list[str]:
    async def one(number: int) -> str:
        answer = await http.post("/in/compose-burst", json={"n": number})
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    accepted = []
    for start in range(0, count, 25):
        accepted += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 25))))
    assert len(set(accepted)) == count
    return accepted


async def _metrics_add_up(http: httpx.AsyncClient, admin: dict, count: int) -> None:
    """Both uvicorn workers answered ingest requests; /metrics (from either) sums them."""
    answer = await http.get("/metrics", headers=admin)
    assert answer.status_code == 200, answer.text
    parsed = samples(answer.text)
    assert value(parsed, "relay_ingest_requests_total", source="compose-burst",
                 result="accepted") == count
    assert value(parsed, "relay_database_up") == 1
