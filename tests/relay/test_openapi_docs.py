"""The OpenAPI schema describes every operation, parameter and field, with enums for
statuses and kinds."""

from __future__ import annotations


async def test_every_operation_parameter_and_field_is_described(client):
    schema = (await client.get("/api/v1/openapi.json")).json()
    blank_operations = [
        f"{method.upper()} {path}" for path, item in schema["paths"].items()
        for method, operation in item.items() if not operation.get("description")]
    blank_parameters = [
        f"{method.upper()} {path} ?{parameter['name']}" for path, item in schema["paths"].items()
        for method, operation in item.items() for parameter in operation.get("parameters", [])
        if not parameter.get("description")]
    blank_fields = [
        f"{name}.{field}" for name, component in schema["components"]["schemas"].items()
        for field, spec in component.get("properties", {}).items() if not spec.get("description")]
    assert blank_operations == []
    assert blank_parameters == []
    assert blank_fields == []


async def test_statuses_and_kinds_are_enums(client):
    schema = (await client.get("/api/v1/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert "failed" in components["DeliveryOut"]["properties"]["status"]["enum"]
    assert "stripe" in components["VerificationOut"]["properties"]["kind"]["enum"]
    assert components["StatsOut"]["properties"]["circuit"]["enum"] == ["closed", "open",
                                                                      "half_open"]
    parameters = {parameter["name"]: parameter for parameter in
                  schema["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert "failed" in str(parameters["status"]["schema"])
    retry = components["BulkRetryIn"]["properties"]["statuses"]
    assert retry["items"]["enum"] == ["failed", "retrying"]
