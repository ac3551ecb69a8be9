"""Signing: Standard Webhooks headers that the reference verifier accepts, rotation included."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from errand.webhooks.signing import InvalidWebhookSecret, Signer, signatures_of

CURRENT = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PREVIOUS = "whsec_" + base64.b64encode(b"the previous secret, 32 bytes!!!").decode()
BODY = b'{"type":"report.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{}}'


def test_headers_verify_with_the_reference_verifier() -> None:
    headers = Signer.from_secrets(CURRENT).headers("msg_abc", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(CURRENT).verify(BODY, headers)["type"] == "report.completed"


def test_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    signature = Signer.from_secrets(CURRENT).signature("msg_1", 1_700_000_000, BODY)
    key = base64.b64decode(CURRENT.removeprefix("whsec_"))
    digest = hmac.new(key, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(digest).decode()


def test_rotation_carries_both_signatures_each_verifying_alone() -> None:
    signer = Signer.from_secrets(CURRENT, PREVIOUS)
    headers = signer.headers("msg_rot", int(time.time()), BODY)
    parts = signatures_of(headers["webhook-signature"])
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    Webhook(CURRENT).verify(BODY, headers)
    Webhook(PREVIOUS).verify(BODY, headers)
    for part, secret in zip(parts, (CURRENT, PREVIOUS), strict=True):
        Webhook(secret).verify(BODY, {**headers, "webhook-signature": part})


def test_previous_equal_to_current_signs_once() -> None:
    signer = Signer.from_secrets(CURRENT, CURRENT)
    assert len(signatures_of(signer.signature("msg_x", 1, BODY))) == 1


def test_a_tampered_body_or_wrong_secret_fails_verification() -> None:
    headers = Signer.from_secrets(CURRENT).headers("msg_t", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(CURRENT).verify(BODY + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(PREVIOUS).verify(BODY, headers)


def test_old_timestamps_are_rejected_by_verifiers() -> None:
    headers = Signer.from_secrets(CURRENT).headers("msg_old", int(time.time()) - 600, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(CURRENT).verify(BODY, headers)


@pytest.mark.parametrize("secret", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!!"])
def test_unusable_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidWebhookSecret):
        Signer.from_secrets(secret)
