"""One attempt of a job as a consumer span, for both engines (they call the same processor).

The span's parent is the context the job carries (`data.trace`, written by the
producer), so every attempt of a job, retries included, hangs off the one
`enqueue` span of the trace that created it.
"""

from __future__ import annotations

from typing import Any

from errand import tracing
from errand.errors import JobDeferred, PermanentFailure
from errand.jobids import QueueName
from errand.processors.job import Processor, RunningJob
from errand.queue.policies import is_last_attempt


async def traced_attempt(
    queue: QueueName, processor: Processor, job: RunningJob, token: str
) -> Any:
    """Run `processor` on `job` inside its attempt span, recording the attempt's outcome.

    Outcomes: `completed`, `retry` (failed, another attempt follows), `failed` (failed
    for good: dead-lettered), `deferred` (put back without spending an attempt).
    """
    attempt = job.attemptsMade + 1
    carrier = job.data.get(tracing.TRACE_FIELD)
    with tracing.attempt_span(str(queue), str(job.id), attempt, carrier) as span:
        try:
            result = await processor(job, token)
        except JobDeferred:
            _outcome(span, "deferred")
            raise
        except Exception as err:
            final = (
                isinstance(err, PermanentFailure)
                or job.discarded
                or is_last_attempt(attempt, job.opts.get("attempts"))
            )
            _outcome(span, "failed" if final else "retry")
            tracing.failed(span, err)
            raise
        _outcome(span, "completed")
        return result


def _outcome(span: Any, outcome: str) -> None:
    if span is not None:
        span.set_attribute(tracing.OUTCOME, outcome)
