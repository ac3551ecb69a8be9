"""Key facts of the OpenAPI document, pinned without a server or schemathesis.

The document is built from the app's routes (no lifespan runs, nothing connects), and
its request schemas are checked against the API's own body parser and validators on
the edge cases, so the schema and the API accept exactly the same values.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import orjson
import pytest

from errand.api.app import create_app
from errand.api.http.body import parse_json_object, validate_body
from errand.api.idempotency import KEY_PATTERN
from errand.api.openapi import CLIENT_PREFIXES, describe
from errand.api.routes.listing import job_filter
from errand.api.schedule_schemas import parse_schedule
from errand.api.schemas import NotificationCreate, ReportCreate
from errand.errors import InvalidInput
from errand.settings import AuthMode, Settings

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
SSE_ROUTES = ("/jobs/{job_id}/events", "/notifications/{job_id}/events")
OPEN_ROUTES = ("/healthz", "/readyz", "/metrics")


def document(*, api_keys: bool = False) -> dict[str, Any]:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", admin_token="t"))
    return describe(app, api_keys=api_keys)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, m, op) for path, item in doc["paths"].items() for m, op in item.items()]


def accepts(schema: dict[str, Any], raw: bytes) -> tuple[bool, bool]:
    """(the schema accepts the JSON body `raw`, the API accepts it)."""
    body = parse_json_object(raw)
    by_schema = jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(body)
    try:
        validate_body(ReportCreate, body)
    except InvalidInput:
        return by_schema, False
    return by_schema, True


@pytest.mark.parametrize(
    ("user_id", "valid"),
    [
        ("0", True),
        (0, True),
        (-5, True),
        (293.0, True),
        (2**53 - 1, True),
        (-(2**53 - 1), True),
        (2**53, False),
        (-(2**63), False),
        ("x" * 128, True),
        ("", False),
        ("x" * 129, False),
        (True, False),
        (1.5, False),
        (None, False),
        ([], False),
    ],
)
def test_user_id_schema_and_validator_agree(
    doc: dict[str, Any], user_id: object, valid: bool
) -> None:
    schema = doc["components"]["schemas"]["ReportCreate"]
    raw = orjson.dumps({"userId": user_id, "reportType": "weekly"})
    assert accepts(schema, raw) == (valid, valid)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        (b"4.2e1", True),
        (b"-0.0", True),
        (b"9007199254740991.0", True),
        (b"18446744073709551615", False),
        (b"123456789012345678901234567890", False),
        (b"1e300", False),
        (b"0.5", False),
    ],
)
def test_a_user_id_number_in_any_notation_is_judged_alike(
    doc: dict[str, Any], number: bytes, valid: bool
) -> None:
    # JSON Schema judges the number's value, whatever its notation; so does the API.
    raw = b'{"reportType": "weekly", "userId": ' + number + b"}"
    assert accepts(doc["components"]["schemas"]["ReportCreate"], raw) == (valid, valid)


def test_an_integral_number_is_the_same_user_as_its_string() -> None:
    same = [
        validate_body(ReportCreate, {"userId": v, "reportType": "w"}).userId
        for v in (42, 42.0, "42")
    ]
    assert same == ["42", "42", "42"]


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://example.com/hook?a=1#f", True),
        ("HTTP://127.0.0.1:8080", True),
        ("http://[::1]:9/x", True),
        ("ftp://example.com/", False),
        ("http://", False),
        ("http://:80/", False),
        ("http://user:pw@example.com/", False),
        ("http://example.com/a\tb", False),
        ("http://example.com/\x7f", False),
        (" http://example.com/", False),
        ("http://example.com/" + "a" * 2030, False),
    ],
)
def test_webhook_url_schema_and_validator_agree(doc: dict[str, Any], url: str, valid: bool) -> None:
    schema = doc["components"]["schemas"]["ReportCreate"]
    raw = orjson.dumps({"userId": "u", "reportType": "weekly", "webhookUrl": url})
    assert accepts(schema, raw) == (valid, valid)


def test_request_schemas_are_the_validators_models(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    note = schemas["NotificationCreate"]
    assert note["properties"]["type"]["enum"] == ["welcome", "password-reset", "order-confirmed"]
    assert note["properties"]["userId"] == schemas["ReportCreate"]["properties"]["userId"]
    assert schemas["ReportCreate"]["properties"]["reportType"]["pattern"] == (
        ReportCreate.model_fields["reportType"].metadata[0].pattern
    )
    assert set(note["required"]) == {"type", "userId"}
    assert NotificationCreate.model_config["extra"] == "ignore"  # so additionalProperties


def test_idempotency_key_header_has_the_servers_rule(doc: dict[str, Any]) -> None:
    for path in ("/reports", "/notifications"):
        [key] = [p for p in doc["paths"][path]["post"]["parameters"] if p["in"] == "header"]
        assert key["name"] == "Idempotency-Key" and not key["required"]
        assert key["schema"]["pattern"] == KEY_PATTERN
        assert {"409", "422"} <= set(doc["paths"][path]["post"]["responses"])


def test_every_error_answer_is_a_problem_document(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (method, path, status)
    assert "HTTPValidationError" not in orjson.dumps(doc).decode()


def test_each_kind_of_route_declares_its_shared_answers(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        statuses = set(op["responses"])
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
        if path.startswith("/admin/"):
            assert op["security"] == [{"adminToken": []}], path
            assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
            assert "403" in statuses
        elif path.startswith(CLIENT_PREFIXES):
            assert op["security"] == [], path  # the document of a server without API keys
            assert op["responses"]["429"]["headers"]["Retry-After"]["required"]
            success = min(status for status in op["responses"] if status < "300")
            assert "RateLimit-Remaining" in op["responses"][success]["headers"], (method, path)
        if path not in ("/healthz", "/metrics"):
            assert "503" in statuses, (method, path)


def test_api_keys_add_the_scheme_and_401_to_the_client_routes_only() -> None:
    doc = document(api_keys=True)
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["apiKey"]["description"],
    }
    for path, method, op in operations(doc):
        if path.startswith(CLIENT_PREFIXES):
            assert op["security"] == [{"apiKey": []}], (method, path)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
            assert "RateLimit-Remaining" not in op["responses"]["401"]["headers"]
        elif path in OPEN_ROUTES:
            assert op["security"] == [] and "401" not in op["responses"], path
    assert "apiKey" not in document()["components"]["securitySchemes"]


@pytest.mark.parametrize(("auth", "declared"), [(AuthMode.KEYS, True), (AuthMode.NONE, False)])
def test_the_app_declares_api_keys_as_its_settings_require(auth: AuthMode, declared: bool) -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", auth=auth))
    served = app.openapi()
    assert ("apiKey" in served["components"]["securitySchemes"]) is declared
    assert (served["paths"]["/jobs"]["get"]["security"] == [{"apiKey": []}]) is declared


def test_accepted_answers_carry_location_and_retry_after(doc: dict[str, Any]) -> None:
    for path in ("/reports", "/notifications"):
        headers = doc["paths"][path]["post"]["responses"]["202"]["headers"]
        assert headers["Location"]["required"] and headers["Retry-After"]["required"]
    for path in ("/jobs/{job_id}", "/notifications/{job_id}"):
        ok = doc["paths"][path]["get"]["responses"]["200"]
        assert not ok["headers"]["Retry-After"]["required"]  # only while not final
        wait = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "wait"]
        assert wait[0]["schema"]["type"] == "number"
        assert wait[0]["schema"]["exclusiveMinimum"] == 0 and wait[0]["schema"]["maximum"] == 60


def test_event_streams_are_text_event_stream(doc: dict[str, Any]) -> None:
    for path in SSE_ROUTES:
        op = doc["paths"][path]["get"]
        content = op["responses"]["200"]["content"]
        assert list(content) == ["text/event-stream"]
        event = content["text/event-stream"]["itemSchema"]
        assert event["properties"]["data"]["contentMediaType"] == "application/json"
        assert any(p["name"] == "Last-Event-ID" for p in op["parameters"])


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    text = orjson.dumps(doc).decode()
    for ref in set(re.findall(r'"\$ref":"#/([^"]+)"', text)):
        node: Any = doc
        for part in ref.split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    assert "$defs" not in text


def test_operation_ids_are_the_handler_names(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    assert {"create_report", "create_notification", "get_job", "job_events"} <= set(ids)


def test_job_views_require_every_field_and_name_the_seven_statuses(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    statuses = ["scheduled", "waiting", "active", "completed", "failed", "canceled", "expired"]
    assert schemas["JobStatus"]["enum"] == statuses
    for name in ("JobPublic", "NotificationPublic", "AdminJobPublic"):
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name
    assert {"userId", "type", "scheduleId", "scheduledFor", "cancelRequested"} <= set(
        schemas["JobPublic"]["properties"]
    )
    assert {"sendAt", "expiresAt"} <= set(schemas["NotificationPublic"]["properties"])
    assert "clientId" in schemas["AdminJobPublic"]["required"]
    assert "clientId" in schemas["DeadLetterPublic"]["required"]


def test_send_at_and_expires_at_are_date_times(doc: dict[str, Any]) -> None:
    note = doc["components"]["schemas"]["NotificationCreate"]["properties"]
    for name in ("sendAt", "expiresAt"):
        assert {"type": "string", "format": "date-time"} in note[name]["anyOf"], name


def test_cancel_answers_the_job_or_409(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/jobs/{job_id}/cancel"]["post"]
    assert "requestBody" not in op
    for status in ("200", "202"):
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/JobPublic"}
    assert op["responses"]["202"]["headers"]["Retry-After"]["required"]
    assert "jobStatus" in op["responses"]["409"]["description"]
    assert {"404", "409"} <= set(op["responses"])


def test_listing_parameters_say_what_the_listing_accepts(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/jobs"]["get"]
    params = {p["name"]: p["schema"] for p in op["parameters"]}
    assert params["queue"]["enum"] == ["reports", "notifications"]
    assert params["limit"] == {"type": "integer", "minimum": 1, "maximum": 100, "title": "Limit"}
    assert params["createdAfter"]["format"] == params["createdBefore"]["format"] == "date-time"
    assert params["userId"]["maxLength"] == 128 and params["cursor"]["type"] == "string"
    status = re.compile(params["status"]["pattern"])
    for value, valid in [
        ("waiting", True),
        ("failed,canceled", True),
        ("", False),
        ("done", False),
    ]:
        assert bool(status.fullmatch(value)) is valid, value
        assert _listing_accepts(status=value) is valid, value
    for kind, valid in [("weekly", True), ("weekly\n", False), ("a b", False)]:
        assert bool(re.fullmatch(params["type"]["pattern"], kind)) is valid, kind
        assert _listing_accepts(kind=kind) is valid, kind
    page = doc["components"]["schemas"]["JobPage"]
    assert set(page["required"]) == {"items", "nextCursor"}
    assert {"type": "null"} in page["properties"]["nextCursor"]["anyOf"]


def _listing_accepts(status: str | None = None, kind: str | None = None) -> bool:
    try:
        job_filter("c", None, status, kind, None, None, None)
    except InvalidInput:
        return False
    return True


def test_batch_items_are_notification_bodies_with_a_key(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    op = doc["paths"]["/notifications/batch"]["post"]
    items = schemas["BatchCreate"]["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 1000)
    key = schemas["BatchItem"]["properties"]["idempotencyKey"]["anyOf"][0]
    assert key["pattern"] == KEY_PATTERN and key["maxLength"] == 255
    results = schemas["BatchResults"]["properties"]["items"]["items"]["anyOf"]
    assert {"$ref": "#/components/schemas/BatchItemAccepted"} in results
    assert schemas["BatchItemRefused"]["properties"]["problem"]["$ref"].endswith("/Problem")
    assert "1 MiB" in op["responses"]["413"]["description"]
    assert "Idempotency-Key" not in {p["name"] for p in op.get("parameters", [])}


@pytest.mark.parametrize(
    ("timing", "valid"),
    [
        ({"every": 60}, True),
        ({"cron": "0 8 * * *", "timezone": "Europe/Paris"}, True),
        ({"cron": "0 8 * * *", "every": None}, True),
        ({"cron": "0 8 * * *", "every": 60}, False),
        ({}, False),
        ({"every": 60, "timezone": "UTC"}, False),
        ({"every": 0}, False),
    ],
)
def test_schedule_timing_schema_and_parser_agree(
    doc: dict[str, Any], timing: dict[str, Any], valid: bool
) -> None:
    body = {**timing, "job": {"queue": "reports", "userId": 7, "reportType": "weekly"}}
    schema = {**doc["components"]["schemas"]["ScheduleCreate"], "components": doc["components"]}
    by_schema = jsonschema_rs.validator_for(schema).is_valid(body)
    try:
        parse_schedule(body)
    except InvalidInput:
        assert (by_schema, False) == (valid, valid)
        return
    assert (by_schema, True) == (valid, valid)


def test_schedule_routes(doc: dict[str, Any]) -> None:
    created = doc["paths"]["/schedules"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"]
    job = doc["components"]["schemas"]["ScheduleCreate"]["properties"]["job"]
    assert [v["properties"]["queue"]["const"] for v in job["oneOf"]] == ["reports", "notifications"]
    assert "204" in doc["paths"]["/schedules/{schedule_id}"]["delete"]["responses"]
    assert "ScheduleList" in str(doc["paths"]["/schedules"]["get"]["responses"]["200"])


def test_admin_client_routes(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert "201" in paths["/admin/clients"]["post"]["responses"]
    assert "requestBody" in paths["/admin/clients"]["post"]
    assert "201" in paths["/admin/clients/{client_id}/keys"]["post"]["responses"]
    assert "requestBody" not in paths["/admin/clients/{client_id}/keys"]["post"]
    assert "204" in paths["/admin/clients/{client_id}"]["delete"]["responses"]
    assert "204" in paths["/admin/clients/{client_id}/keys/{key_id}"]["delete"]["responses"]
    listed = paths["/admin/clients"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/ClientList"}


def test_client_name_pattern_is_the_printable_rule_over_latin_1(doc: dict[str, Any]) -> None:
    name = doc["components"]["schemas"]["ClientCreate"]["properties"]["name"]
    schema = jsonschema_rs.validator_for(name)
    for code in range(256):
        text = f"a{chr(code)}b"
        assert schema.is_valid(text) is text.isprintable(), hex(code)
