"""Schema-driven fuzzing (schemathesis) of every route of a live API served in the test's loop.

Each operation of /openapi.json gets a bounded, derandomized set of generated requests
(admin routes with the bearer token). Checks: no 5xx, and every response matches the
status codes, content types and schemas the OpenAPI document declares.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import hypothesis
import hypothesis.errors
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.stack import Stack

EXAMPLES_PER_OPERATION = int(os.environ.get("ERRAND_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(base_url: str, headers: dict[str, str]) -> dict[str, Any]:
    """Positive and negative examples for every operation; failures by operation and mode."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: dict[str, str] = {}
    calls = 0
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode}]"
            error = _fuzz_operation(operation, mode, base_url, headers)
            calls += error[0]
            if error[1]:
                failures[label] = error[1]
    return {"operations": operations, "requests": calls, "failures": failures}


def _fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]
) -> tuple[int, str | None]:
    """(requests sent, the first failure or None) for one operation in one generation mode."""
    calls = 0

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to negate: e.g. a lone string path parameter, where every value is valid.
        if mode is GenerationMode.NEGATIVE:
            return calls, None
        raise
    except Exception as err:
        return calls, f"{type(err).__name__}: {str(err)[:2000]}"
    return calls, None


async def test_no_route_answers_5xx_or_breaks_its_declared_schema(api: Stack) -> None:
    report = await asyncio.to_thread(fuzz, api.base_url, api.admin)
    print(f"\n[fuzz] operations={report['operations']} requests={report['requests']}")
    assert report["operations"] >= 12
    assert report["failures"] == {}, "\n\n".join(
        f"{label}\n{detail}" for label, detail in report["failures"].items()
    )
