"""Webhook events: deterministic ids per (job, event, round) and the payload's shape."""

from __future__ import annotations

from errand.jobids import QueueName, new_job_id, queue_of
from errand.queue.snapshot import JobSnapshot
from errand.statuses import JobStatus
from errand.webhooks.events import (
    EventType,
    delivery_job_id,
    event_payload,
    event_type_for,
    final_snapshot,
    webhook_id_for,
)


def active_snapshot(queue: QueueName, data: dict[str, str]) -> JobSnapshot:
    return JobSnapshot(
        job_id=new_job_id(queue),
        queue=queue,
        status=JobStatus.ACTIVE,
        name="welcome",
        data=data,
        priority=5,
        progress=40,
        attempts_made=1,
        max_attempts=4,
        created_ms=1_700_000_000_000,
        started_ms=1_700_000_001_000,
        finished_ms=0,
        next_attempt_ms=0,
        failed_reason=None,
        webhook={"status": "pending"},
    )


def test_event_types_per_queue_and_outcome() -> None:
    notifications, reports = QueueName.NOTIFICATIONS, QueueName.REPORTS
    assert event_type_for(notifications, JobStatus.COMPLETED) is EventType.NOTIFICATION_SENT
    assert event_type_for(notifications, JobStatus.FAILED) is EventType.NOTIFICATION_FAILED
    assert event_type_for(notifications, JobStatus.CANCELED) is EventType.NOTIFICATION_CANCELED
    assert event_type_for(notifications, JobStatus.EXPIRED) is EventType.NOTIFICATION_EXPIRED
    assert event_type_for(reports, JobStatus.COMPLETED) is EventType.REPORT_COMPLETED
    assert event_type_for(reports, JobStatus.FAILED) is EventType.REPORT_FAILED
    assert event_type_for(reports, JobStatus.CANCELED) is EventType.REPORT_CANCELED
    assert event_type_for(reports, JobStatus.EXPIRED) is None
    assert event_type_for(notifications, JobStatus.WAITING) is None
    assert event_type_for(QueueName.WEBHOOKS, JobStatus.COMPLETED) is None


def test_delivery_ids_are_deterministic_per_job_event_and_round() -> None:
    job_id = new_job_id(QueueName.NOTIFICATIONS)
    first = delivery_job_id(job_id, EventType.NOTIFICATION_SENT, 1)
    assert first == delivery_job_id(job_id, EventType.NOTIFICATION_SENT, 1)
    assert queue_of(first) is QueueName.WEBHOOKS
    others = {
        delivery_job_id(job_id, EventType.NOTIFICATION_FAILED, 1),
        delivery_job_id(job_id, EventType.NOTIFICATION_SENT, 2),
        delivery_job_id(new_job_id(QueueName.NOTIFICATIONS), EventType.NOTIFICATION_SENT, 1),
    }
    assert first not in others and len(others) == 3
    assert webhook_id_for(first) == "msg_" + first.removeprefix("whk_")


def test_notification_payload_predicts_the_final_view() -> None:
    snap = active_snapshot(QueueName.NOTIFICATIONS, {"type": "welcome", "userId": "u-1"})
    final = final_snapshot(snap, 1_700_000_002_000, None)
    payload = event_payload(EventType.NOTIFICATION_SENT, final, 1_700_000_002_000)
    assert payload["type"] == "notification.sent"
    assert payload["timestamp"] == "2023-11-14T22:13:22.000Z"
    data = payload["data"]
    assert data["status"] == "completed" and data["attemptsMade"] == 2
    assert data["deadLettered"] is False and data["error"] is None
    assert data["finishedAt"] == "2023-11-14T22:13:22.000Z" and data["queue"] == "notifications"
    assert data["userId"] == "u-1" and data["type"] == "welcome"
    assert "webhook" not in data and "nextAttemptAt" not in data


def test_report_failure_payload() -> None:
    snap = active_snapshot(QueueName.REPORTS, {"userId": "u-2", "reportType": "activity"})
    final = final_snapshot(snap, 1_700_000_002_000, "boom")
    data = event_payload(EventType.REPORT_FAILED, final, 1_700_000_002_000)["data"]
    assert data["status"] == "failed" and data["deadLettered"] is True
    assert data["error"] == "boom" and data["resultUrl"] is None and data["progress"] == 40
    assert data["userId"] == "u-2" and data["reportType"] == "activity"
