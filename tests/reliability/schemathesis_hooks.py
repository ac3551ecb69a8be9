"""schemathesis hooks for test_api_fuzz (loaded with SCHEMATHESIS_HOOKS).

Two checks differ from schemathesis' own, each for answers no schema can state, all
documented in the routes' descriptions and in docs/api-notes.md:

`positive_data_acceptance` also accepts a 422 for a schema-valid request whose every
field error is one of STATE_DEPENDENT: a rule that depends on the server's state,
the clock or the host, or compares two fields:
- a `webhookUrl` whose host does not resolve (the test machine resolves no name);
- an `Idempotency-Key` already used with another body (the generator reuses keys);
- a `cursor` this server did not make (the generator makes them up);
- `sendAt` over 365 days ahead, `expiresAt` not later than now or than `sendAt`;
- a `cron` expression croniter refuses or that never runs, a `timezone` this host
  does not know;
- a client `name` with a character Python's `str.isprintable` refuses beyond the
  controls the pattern states (Unicode categories, which schema tools' regexes lack).

`negative_data_rejection` also accepts the 200 of POST /notifications/batch when some
item was refused: a batch answers each item on its own (a 4xx item result), and only
a batch without a valid `items` list is refused whole.
A 422 that names any other field, or for another reason, is still a finding.

The `before_call` hook gives each request that uses its id up (a cancel, a delete, a
revoke) a new id where the dictionary says `fresh-...`: a fixed pool runs out in a long
run, and a phase answered only 409s and 404s fails as "missing test data".
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import schemathesis
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

_RESOLVE = ("does not resolve", "did not resolve", "has no IP address")
_CRON = ("cron must have five fields", "is not a cron expression that ever runs")
STATE_DEPENDENT = {
    "webhookUrl": _RESOLVE,
    "job.webhookUrl": _RESOLVE,
    "Idempotency-Key": ("already used with a different body",),
    "cursor": ("this server did not make this cursor",),
    "sendAt": ("must be at most 365 days ahead",),
    "expiresAt": ("must be later than now", "must be later than sendAt"),
    "cron": _CRON,
    "timezone": ("is not an IANA time zone name",),
    "name": ("name must be printable characters",),  # Unicode categories: see CLIENT_NAME_SCHEMA
}
BATCH = "/notifications/batch"


def _state_dependent(error: Any) -> bool:
    reasons = STATE_DEPENDENT.get(error.get("field"), ())
    return any(reason in str(error.get("message", "")) for reason in reasons)


def _json(response: Any) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def only_state_dependent_errors(response: Any) -> bool:
    """True for a 422 whose every field error is one of STATE_DEPENDENT."""
    body = _json(response) if response.status_code == 422 else None
    errors = body.get("errors") if isinstance(body, dict) else None
    return bool(errors) and all(_state_dependent(e) for e in errors)


def some_batch_item_refused(response: Any, case: Any) -> bool:
    """True for a 200 of POST /notifications/batch with a refused item."""
    if case.operation.path != BATCH or response.status_code != 200:
        return False
    body = _json(response)
    items = body.get("items") if isinstance(body, dict) else None
    return isinstance(items, list) and any(item.get("status", 0) >= 400 for item in items)


@schemathesis.check
def positive_data_acceptance_but_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, except the STATE_DEPENDENT 422s."""
    if only_state_dependent_errors(response):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]


@schemathesis.check
def negative_data_rejection_but_batch_items(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' negative_data_rejection, except a batch that refused an item."""
    if some_batch_item_refused(response, case):
        return None
    return negative_data_rejection(ctx, response, case)  # type: ignore[no-any-return]


# The dictionary values `before_call` replaces with a new id, and the request making it.
FRESH_JOB, FRESH_SCHEDULE, FRESH_CLIENT, FRESH_KEY = (
    "fresh-job",
    "fresh-schedule",
    "fresh-client",
    "fresh-key",
)
_made = itertools.count()


def _post(path: str, body: Any, admin: bool, field: str) -> str | None:
    """The `field` of what a POST to the stack made (None when it was refused)."""
    secret = os.environ["ERRAND_FUZZ_ADMIN_TOKEN" if admin else "ERRAND_FUZZ_API_KEY"]
    reply = httpx.post(
        os.environ["ERRAND_FUZZ_BASE_URL"] + path,
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    made = _json(reply) if reply.status_code in (201, 202) else None
    return str(made[field]) if isinstance(made, dict) and field in made else None


def _fresh(value: str, params: dict[str, Any]) -> str | None:
    n = next(_made)
    if value == FRESH_JOB:
        later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        body = {"type": "welcome", "userId": f"fuzz-cancel-{n}", "sendAt": later}
        return _post("/notifications", body, False, "jobId")
    if value == FRESH_SCHEDULE:
        job = {"queue": "reports", "userId": f"fuzz-{n}", "reportType": "weekly"}
        return _post("/schedules", {"every": 3600, "job": job}, False, "scheduleId")
    if value == FRESH_CLIENT:
        return _post("/admin/clients", {"name": f"fuzz-{n}"}, True, "clientId")
    if value == FRESH_KEY:
        client = params.get("client_id")
        return _post(f"/admin/clients/{client}/keys", None, True, "keyId")
    return None


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    """Replace a `fresh-...` path parameter with a new id of its kind."""
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        if isinstance(value, str) and value.startswith("fresh-"):
            made = _fresh(value, params)
            if made is not None:
                params[name] = made
