"""The OpenAPI schema and the interactive docs, with their static files, load."""

from __future__ import annotations

import re


async def test_openapi_schema(client, db):
    answer = await client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    schema = answer.json()
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Relay API"
    assert "/api/v1/sources" in schema["paths"]
    assert "/api/v1/events/{event_id}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"


async def test_docs_page_and_its_scripts_load(client, db):
    answer = await client.get("/api/v1/docs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/static/ninja/[^"]+)"', answer.text)
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content
    assert "/api/v1/openapi.json" in answer.text
