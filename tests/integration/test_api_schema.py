"""The OpenAPI document is the truth: schemathesis, with every check it has (``st run
--checks all``) and every phase (examples, coverage, fuzzing, stateful), finds nothing the
server does that the document does not say — once per role's key.

Every operation of the app is tested, found from its document, so new routes are covered
without editing this file. Bounded (few examples, a fixed seed, deterministic generation)
so it runs with the rest of the suite.

What the schema cannot state is supplied the way schemathesis documents for it, as
configured values for the data generator, never by switching a check off:

- ``POST /api/v1/runs`` gets this tenant's agent and a valid plan in the fuzzing and
  stateful phases: an agent id must name an existing agent, and whether a plan's params
  are valid is up to each skill (a JMESPath expression, a priced model). The plan's
  structure is in the schema, and the examples and coverage phases build plans from it;
  plan contents are fuzzed by ``test_api_fuzz.py``.
- Every request carries a fresh key of the role under test (an auth provider without a
  cache). Endpoints that revoke or rotate keys can then act on any key, the caller's own
  included, without locking the rest of the run out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as engine_events
from schemathesis.generation.case import Case

from conftest import TenantContext, make_settings, make_tenant
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.domain.records import Role
from runkernel.entrypoints.api import create_app

SEED = 20261201
MAX_EXAMPLES = 8
STATEFUL_STEPS = 8
VALID_PLAN = {
    "steps": [
        {
            "step_id": "pick",
            "skill": "json.transform",
            "params": {"data": {"a": [1, 2]}, "expression": "a[0]"},
        }
    ]
}


@pytest.fixture
def kernel_on_sqlite(tmp_path: Path) -> Iterator[Kernel]:
    # Unlimited rates: the generator sends hundreds of requests in seconds.
    settings = make_settings(
        f"sqlite:///{tmp_path / 'runkernel.db'}",
        rate_limit_key_per_s=0,
        rate_limit_tenant_per_s=0,
    )
    kernel = build_kernel(settings)
    kernel.migrate()
    yield kernel
    kernel.close()


def config_for(tenant: TenantContext) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {"enabled": True},
            "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
            "workers": 1,
            "operations": [
                {
                    # By name: separate include-path and include-method would match
                    # either one.
                    "include-name": "POST /api/v1/runs",
                    "parameters": {"body.agent_id": tenant.agent.id, "body.plan": VALID_PLAN},
                },
            ],
        }
    )


def describe(event: engine_events.ScenarioFinished) -> list[str]:
    found = []
    for case_id, checks in event.recorder.checks.items():
        interaction = event.recorder.interactions.get(case_id)
        response = interaction.response if interaction is not None else None
        answer = f"-> {response.status_code} {response.content!r}" if response else ""
        for check in checks:
            if check.failure_info is not None:
                failure = check.failure_info.failure
                found.append(
                    f"{event.label} [{event.phase.value}] {check.name}: {failure.title}\n"
                    f"{failure.message}\n{check.failure_info.code_sample}\n{answer}"
                )
    return found or [f"{event.label} [{event.phase.value}] failed"]


# Every check schemathesis has (max_response_time needs a limit, which a test must not set).
ALL_CHECKS = {
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
}
ALL_PHASES = {"examples", "coverage", "fuzzing", "stateful"}


@dataclass
class Outcome:
    cases: int = 0
    keys: int = 0
    checks: set[str] = field(default_factory=set)
    phases: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def run_schemathesis(kernel: Kernel, tenant: TenantContext, role: Role) -> Outcome:
    """Run every phase with every check: what ran, and what failed."""
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(kernel), config=config_for(tenant)
    )

    outcome = Outcome()

    @schema.auth(refresh_interval=None)
    class FreshKey:
        def get(self, case: Case, ctx: Any) -> str:
            outcome.keys += 1
            if role is Role.OPERATOR:  # a key of no tenant: every route must refuse it cleanly
                return kernel.operators.create_key().api_key
            return kernel.tenancy.create_api_key(tenant.principal.tenant_id, role)

        def set(self, case: Case, data: str, ctx: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    for event in from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            outcome.cases += len(event.recorder.cases)
            outcome.phases.add(event.phase.value)
            outcome.checks |= {c.name for checks in event.recorder.checks.values() for c in checks}
            if event.status in (Status.FAILURE, Status.ERROR):
                outcome.problems += describe(event)
        elif isinstance(event, engine_events.NonFatalError | engine_events.FatalError):
            outcome.problems.append(f"error: {getattr(event, 'label', '')} {event}")
        elif isinstance(event, engine_events.EngineFinished):
            outcome.problems += [f"after run: {failure.title}" for failure in event.failures]
    return outcome


@pytest.mark.parametrize("role", list(Role), ids=lambda role: role.value)
def test_schemathesis_finds_nothing_with_the_key_of_every_role(
    kernel_on_sqlite: Kernel, role: Role
) -> None:
    tenant = make_tenant(kernel_on_sqlite)
    outcome = run_schemathesis(kernel_on_sqlite, tenant, role)
    assert not outcome.problems, "\n\n".join(outcome.problems)
    # It ran, all of it: every phase, every check, and a fresh key for each request.
    assert outcome.phases == ALL_PHASES
    assert outcome.checks == ALL_CHECKS
    assert outcome.cases > 200 and outcome.keys > 200
