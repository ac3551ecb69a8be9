"""schemathesis hooks for test_api_fuzz (loaded with SCHEMATHESIS_HOOKS).

One check differs from schemathesis' own: `positive_data_acceptance` also accepts
the two 422s a schema-valid request may get for a reason no schema can state,
both documented in the 422's description and in docs/api.md:
- a `webhookUrl` whose host does not resolve (the document gives the URL's syntax
  and says the host must resolve, to a public address; the test machine resolves
  no name);
- an `Idempotency-Key` already used with another body (the generator reuses keys
  such as "0" across different bodies).
A 422 that names any other field is still a finding.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

STATE_DEPENDENT = {
    "webhookUrl": ("does not resolve", "did not resolve", "has no IP address"),
    "Idempotency-Key": ("already used with a different body",),
}


def _state_dependent(error: Any) -> bool:
    reasons = STATE_DEPENDENT.get(error.get("field"), ())
    return any(reason in str(error.get("message", "")) for reason in reasons)


def only_state_dependent_errors(response: Any) -> bool:
    """True for a 422 whose every field error is one of STATE_DEPENDENT."""
    if response.status_code != 422:
        return False
    try:
        errors = json.loads(response.content).get("errors") or []
    except (ValueError, AttributeError):
        return False
    return bool(errors) and all(_state_dependent(e) for e in errors)


@schemathesis.check
def positive_data_acceptance_but_state(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, except the STATE_DEPENDENT 422s."""
    if only_state_dependent_errors(response):
        return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]
