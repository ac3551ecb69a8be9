"""Standard Webhooks signing: the `webhook-*` headers of one delivery attempt (pure, no I/O).

The signature is HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the
secret, rendered `v1,<base64>` by the `standardwebhooks` package itself, so any
Standard Webhooks verifier accepts it. During a secret rotation every delivery
carries one signature per secret, space-separated, the current secret's first:
receivers that still hold the previous secret keep verifying until they switch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


class InvalidWebhookSecret(ValueError):
    """A secret that is not `whsec_` + base64 of at least one byte."""


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs with the current secret and, during a rotation, the previous one too."""

    secrets: tuple[str, ...]

    @classmethod
    def from_secrets(cls, current: str, previous: str | None = None) -> Signer:
        """Raises InvalidWebhookSecret for a secret the Standard Webhooks scheme cannot use."""
        chosen = [current] + ([previous] if previous and previous != current else [])
        for secret in chosen:
            _check_secret(secret)
        return cls(tuple(chosen))

    def signature(self, webhook_id: str, timestamp_s: int, body: bytes) -> str:
        """The `webhook-signature` value: `v1,<b64>` per secret, space-separated."""
        moment = datetime.fromtimestamp(timestamp_s, tz=UTC)
        text = body.decode("utf-8")
        return " ".join(Webhook(s).sign(webhook_id, moment, text) for s in self.secrets)

    def headers(self, webhook_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers of one attempt."""
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": self.signature(webhook_id, timestamp_s, body),
        }


def _check_secret(secret: str) -> None:
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret("a webhook secret starts with 'whsec_'")
    try:
        Webhook(secret)
    except Exception as err:  # binascii.Error, EmptyWebhookSecretError
        raise InvalidWebhookSecret(f"a webhook secret is whsec_ + base64: {err}") from err


def signatures_of(header: str) -> Sequence[str]:
    """The individual `v1,<b64>` entries of a `webhook-signature` header."""
    return [part for part in header.split(" ") if part]
