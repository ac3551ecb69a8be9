"""Cross-language: the `standardwebhooks` npm package verifies a real errand delivery."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.stack import FAST_DEFAULTS, Stack
from support.webhook_receiver import WebhookReceiver, serve_receiver

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SECRET: str = FAST_DEFAULTS["webhook_secret"]
PREVIOUS = "whsec_" + base64.b64encode(b"node-interop-previous-secret-32b").decode()

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with serve_receiver() as running:
        yield running


async def run_node_verifier(capture: Path) -> tuple[int, dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "verify_webhook.js"),
        str(capture),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert out, err.decode()
    result = json.loads(out)
    # The exit status is the verifier's verdict too: 0 with "ok": true, 1 with false.
    assert process.returncode == (0 if result["ok"] else 1), (process.returncode, err.decode())
    return process.returncode, result


@pytest.mark.settings(webhook_secret_previous=PREVIOUS)
async def test_node_standardwebhooks_verifies_a_real_delivery(
    stack: Stack, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    reply = await stack.http.post(
        "/notifications",
        json={
            "type": "order-confirmed",
            "userId": "u-node",
            "webhookUrl": receiver.url("/node"),
        },
    )
    assert reply.status_code == 202
    [delivery] = await receiver.wait_for("/node")
    capture = tmp_path / "delivery.json"

    def write(secrets: list[str], body: bytes) -> Path:
        capture.write_text(
            json.dumps({"secrets": secrets, "headers": delivery.headers, "body": body.decode()})
        )
        return capture

    code, result = await run_node_verifier(write([SECRET, PREVIOUS], delivery.body))
    assert code == 0, result
    assert result == {"ok": True, "verifiedWith": 2, "type": "notification.sent"}

    tampered = delivery.body.replace(b"u-node", b"u-evil")
    code, result = await run_node_verifier(write([SECRET], tampered))
    assert code == 1 and result["ok"] is False
