"""No input makes ingest-api answer 500: schemathesis generates requests for every operation of
`/v1/openapi.json` (a few hundred per operation, valid and invalid) against the real service and
checks each answer against the document (status declared, content type, body and headers).

Each operation is called with the credentials its security names (a provider's, or a reader's
for the catalogue). Feed URLs in generated bodies are pointed at a closed port of 127.0.0.1, so
that neither a preview nor a run the fuzzer triggers reaches beyond this machine."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.system import System, free_port

# About 2 minutes on the shared 2-core machine; the marker only keeps a loaded run from
# being cut at the suite's 300 s default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXAMPLES_PER_OPERATION = 200
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def fuzzing_provider(system: System) -> dict[str, str]:
    _, created = system.cli("provider", "create", "Fuzzing Estates", "--json")
    provider: dict[str, str] = created
    # Well above what one client sends, so the answers are about the requests, not the rate.
    system.cli("provider", "rate", provider["provider_id"], "--per-second", "100000", "--json")
    return provider


def test_no_input_gets_a_500_and_every_answer_matches_the_document(
    system: System, fuzzing_provider: dict[str, str], reader: dict[str, str]
) -> None:
    base_url = system.url("ingest-api")
    schema = schemathesis.openapi.from_url(base_url + "/v1/openapi.json", wait_for_schema=30)
    provider_auth = {"Authorization": f"Bearer {fuzzing_provider['token']}"}
    reader_auth = {"Authorization": f"Bearer {reader['token']}"}
    nowhere = f"http://127.0.0.1:{free_port()}/feed.json"
    failures: dict[str, BaseException] = {}
    operations = 0
    for found in schema.get_all_operations():
        operation = found.ok()
        operations += 1
        schemes = {name for entry in operation.definition.raw.get("security", []) for name in entry}
        headers = reader_auth if "reader" in schemes else provider_auth

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def exercise(case: schemathesis.Case) -> None:
            if case.headers:  # the credentials are this test's, and the provider its own
                case.headers.pop("Authorization", None)
                case.headers.pop("X-Tenant-Id", None)
            if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
                case.body["url"] = nowhere
            # `headers` is this iteration's: exercise() runs before the loop moves on.
            case.call_and_validate(
                base_url=base_url,
                headers=headers,  # noqa: B023
                checks=CHECKS,
                timeout=30,
            )

        try:
            exercise()
        # Every operation runs and all failures are reported (schemathesis raises several
        # distinct failures of one operation as a BaseExceptionGroup).
        except (Exception, BaseExceptionGroup) as failure:
            failures[operation.label] = failure
    assert operations >= 23
    assert not failures, "\n\n".join(f"{label}: {failure}" for label, failure in failures.items())
