"""The receiving side of errand's webhooks: check a delivery's Standard Webhooks signature.

Runs in the receiver's service, so it imports only `standardwebhooks` and the
standard library, nothing of errand's server side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


class InvalidWebhook(ValueError):
    """A delivery whose headers, signature, timestamp or body do not verify."""


def verify(payload: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The event (`type`, `timestamp`, `data`) of a delivery signed with `secret`.

    `payload` is the raw request body, exactly as received (parse it only after
    this); `headers` the request's headers (any case). Raises InvalidWebhook when a
    `webhook-*` header is missing or malformed, the timestamp is more than five
    minutes off, no signature matches, or the body is not a JSON object. Raises
    ValueError for a secret that is not `whsec_` + base64.
    """
    try:
        webhook = Webhook(secret)
    except Exception as err:  # the package raises binascii.Error and others
        raise ValueError("the webhook secret must be whsec_ followed by base64") from err
    try:
        event = webhook.verify(payload, {k.lower(): v for k, v in headers.items()})
    except WebhookVerificationError as err:
        raise InvalidWebhook(f"webhook did not verify: {err}") from err
    except ValueError as err:  # a malformed signature header, a body that is not UTF-8 JSON
        raise InvalidWebhook(f"webhook did not verify: {type(err).__name__}") from err
    if not isinstance(event, dict):
        raise InvalidWebhook("webhook body is not a JSON object")
    return event
