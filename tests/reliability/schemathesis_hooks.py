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
"""

from __future__ import annotations

import json
from typing import Any

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
