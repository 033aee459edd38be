"""No input makes ingest-api or pricing answer 500 or break their own description: schemathesis
generates requests for every operation of each service's `/v1/openapi.json` (valid and invalid)
against the real running service and applies every check it has (status, content type, body and
headers as documented, invalid data refused, valid data accepted, required headers, unsupported
methods, auth not ignored, ...). The stateful run follows the links schemathesis infers between
operations (create, then read, patch, delete, read the receipt; use after free) in sequences.

Each operation is called with the credentials its security names (a provider's, or a reader's for
the catalogue). Feed URLs in generated bodies are pointed at a closed port of 127.0.0.1, so that
neither a preview nor a run the fuzzer triggers reaches beyond this machine.

The default suite runs a bounded number of examples (about two minutes); `slow` runs a deep one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core import NOT_SET
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.e2e.conftest import own_system
from tests.support.infra import Infra
from tests.support.system import System, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

QUICK_EXAMPLES = 100
DEEP_EXAMPLES = 200
QUICK_STATEFUL = 8
DEEP_STATEFUL = 100


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    auth: dict[str, str]
    # Headers a case must not carry of its own: the credentials (and tenant) are the test's.
    reserved: tuple[str, ...]
    min_operations: int
    # The credentials of operations whose security names a reader (ingest-api's catalogue).
    reader_auth: dict[str, str] | None = None
    # Where generated feed URLs point: a closed local port.
    nowhere = f"http://127.0.0.1:{free_port()}/feed.json"

    def headers_for(self, operation: Any) -> dict[str, str]:
        schemes = {name for entry in operation.definition.raw.get("security", []) for name in entry}
        if "reader" in schemes and self.reader_auth is not None:
            return self.reader_auth
        return self.auth


@pytest.fixture(scope="module")
def fuzzed_system(
    test_infra: Infra, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The services on their own, with a failed-authentication limit out of reach: schemathesis
    sends hundreds of bad credentials (auth must not be ignored), and 429s would hide the answers
    under test (and, on a shared system, lock every other test's client out for a minute)."""
    unlimited = {
        "RWASYNC_INGEST_AUTH_FAILURES_PER_MINUTE": "1000000",
        "RWASYNC_PRICING_AUTH_FAILURES_PER_MINUTE": "1000000",
    }
    workdir = Path(tmp_path_factory.mktemp("fuzzed"))
    serving = ("ingest-api", "reconciler", "pricing")
    with own_system(test_infra, template_database, workdir, unlimited, serving) as running:
        yield running


@pytest.fixture(scope="module")
def targets(fuzzed_system: System) -> dict[str, Target]:
    system = fuzzed_system
    _, provider = system.cli("provider", "create", "Fuzzing Estates", "--json")
    # Well above what one client sends, so the answers are about the requests, not the rate.
    system.cli("provider", "rate", provider["provider_id"], "--per-second", "100000", "--json")
    _, reader = system.cli("reader", "create", "Fuzzing Portal", "--json")
    ingest = system.url("ingest-api")
    provider_auth = {"Authorization": f"Bearer {provider['token']}"}
    # One price, so that pricing's reads of this provider reach their 200 answers too.
    answer = requests.put(
        f"{ingest}/v1/assets/fuzz-1/price",
        json={"amount": "10.5", "currency": "USD", "as_of": datetime.now(UTC).isoformat()},
        headers=provider_auth,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    return {
        "ingest-api": Target(
            "ingest-api",
            ingest,
            provider_auth,
            ("Authorization", "X-Tenant-Id"),
            23,
            reader_auth={"Authorization": f"Bearer {reader['token']}"},
        ),
        "pricing": Target(
            "pricing",
            system.url("pricing"),
            {"Authorization": f"Bearer {reader['token']}"},
            ("Authorization",),
            5,
        ),
    }


def load(target: Target) -> Any:
    # The stream's provider ids are generated, never the fuzzing provider's: it is fuzzed by its
    # refusals (an open stream never ends; tests/integration/pricing/test_stream.py covers it).
    return schemathesis.openapi.from_url(target.base_url + "/v1/openapi.json", wait_for_schema=30)


def excluded(case: schemathesis.Case) -> list[Any]:
    """Checks that do not apply to this case.

    `positive_data_acceptance` (a schema-valid request must succeed) does not apply where
    validity is more than JSON Schema can state, so a schema-valid request may rightly be a 4xx:
    bodies of the asset and price contracts (a timestamp at most 5 minutes ahead, ISO 4217 codes,
    EIP-55 checksums, a body id equal to the path's), opaque page and change-feed cursors (only
    one the API returned is valid), time ranges (`from` before `to`, at most 5000 candles) and
    idempotency keys (valid once per request). The other direction (`negative_data_rejection`)
    applies everywhere.
    """
    beyond_schema = {"cursor", "since", "from", "to"} & set(case.query or {})
    # An Idempotency-Key is valid once per request: reused with another request, it is a 422.
    stateful = "idempotency-key" in {name.lower() for name in case.headers or {}}
    if case.body is not NOT_SET or beyond_schema or stateful:
        return [positive_data_acceptance]
    return []


def strip_reserved(case: schemathesis.Case, target: Target) -> None:
    # The credentials sent are the case's own, also when it was generated without any header:
    # schemathesis judges a negative case by the headers it holds, and one whose only invalid
    # part was a credential it generated or left out (the test's are sent either way) would
    # otherwise count as "schema-violating request accepted".
    headers = {
        name: value for name, value in (case.headers or {}).items() if name not in target.reserved
    }
    case.headers = {**headers, **target.headers_for(case.operation)}
    if case.query and case.operation.path == "/v1/prices/stream":
        case.query.pop("access_token", None)
    if isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        case.body["url"] = Target.nowhere


def run_operations(target: Target, examples: int) -> dict[str, BaseException]:
    schema = load(target)
    failures: dict[str, BaseException] = {}
    operations = 0
    for found in schema.get_all_operations():
        operation = found.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
        )
        def exercise(case: schemathesis.Case) -> None:
            strip_reserved(case, target)
            case.call_and_validate(
                base_url=target.base_url,
                headers=target.headers_for(case.operation),
                timeout=30,
                excluded_checks=excluded(case),
            )

        try:
            exercise()
        except Exception as failure:  # every operation runs; all failures are reported
            failures[operation.label] = failure
    assert operations >= target.min_operations, f"{target.name}: only {operations} operations"
    return failures


def run_stateful(target: Target, examples: int, steps: int) -> None:
    # Not the portal catalogue: its pages and change feed list every change any earlier
    # sequence made, so the calls hypothesis draws from them differ each time it replays a
    # sequence, which it refuses (FlakyStrategyDefinition). `run_operations` covers its calls.
    schema = load(target).exclude(path_regex=r"^/v1/catalog")
    machine: type[APIStateMachine] = schema.as_state_machine()

    class Workflow(machine):  # type: ignore[valid-type, misc]
        def before_call(self, case: schemathesis.Case) -> None:
            strip_reserved(case, target)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            headers = target.headers_for(case.operation)
            return {"base_url": target.base_url, "headers": headers, "timeout": 30}

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                additional_checks=additional_checks,
                excluded_checks=excluded(case),
                transport_kwargs=kwargs,
            )

    Workflow.run(
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
    )


def report(failures: dict[str, BaseException]) -> str:
    return "\n\n".join(f"{label}: {failure}" for label, failure in failures.items())


TARGETS = ["ingest-api", "pricing"]


@pytest.mark.parametrize("name", TARGETS)
def test_no_input_gets_a_500_and_every_answer_matches_the_document(
    targets: dict[str, Target], name: str
) -> None:
    failures = run_operations(targets[name], QUICK_EXAMPLES)
    assert not failures, report(failures)


def test_linked_sequences_of_calls_hold_every_check(targets: dict[str, Target]) -> None:
    run_stateful(targets["ingest-api"], QUICK_STATEFUL, 6)


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_deep_run_no_input_gets_a_500(targets: dict[str, Target], name: str) -> None:
    failures = run_operations(targets[name], DEEP_EXAMPLES)
    assert not failures, report(failures)


@pytest.mark.slow
def test_deep_run_of_linked_sequences(targets: dict[str, Target]) -> None:
    run_stateful(targets["ingest-api"], DEEP_STATEFUL, 10)
