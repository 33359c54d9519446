"""The cost of the check before every step (``MidExecutionPolicyChecker.check_before_step``):
p50/p99 of a check between re-reads (no I/O: the run's budget and the rules read last),
and separately of a re-read (rules, stop flag, tenant status and pauses from the database).

The tenant has ``--rules`` policy rules (a mix of limits and require_approval rules that
do not match the step), so a check walks as many rules as a busy tenant would have.

    .venv/bin/python bench/checker.py --db sqlite   --calls 10000
    .venv/bin/python bench/checker.py --db postgres --calls 10000
"""

from __future__ import annotations

import argparse
import sys
import time

from databases import DB_KINDS, DbKind, fresh_database
from results import percentile
from runkernel.bootstrap import Kernel, build_kernel
from runkernel.config import Settings
from runkernel.domain.midrun import CheckDecision
from runkernel.domain.records import Principal
from runkernel.domain.skills import Usage
from runkernel.entrypoints.governance_services import GovernanceServices
from runkernel.services.midrun import NextStep, RunWatch
from workload import chat_params, echo_chain_plan

TARGET_P99_MS = 1.0


def _rules(kernel: Kernel, principal: Principal, count: int) -> None:
    policies = GovernanceServices.of(kernel).policies
    for i in range(count):
        if i % 2:
            policies.create(
                principal,
                kind="require_approval",
                params={"skills": ["webhook.send"], "url_prefix": f"https://pay-{i}/"},
            )
        else:
            policies.create(
                principal,
                kind="max_steps",
                params={"max_steps": 1000 + i},
                enforcement="WARN",
            )


def measure(db: DbKind, calls: int, rereads: int, rules: int, postgres_url: str | None) -> None:
    with fresh_database(db, postgres_url=postgres_url) as url:
        # Re-reads only when the benchmark asks: the interval and step count never fall due.
        settings = Settings(
            database_url=url, policy_check_interval_s=1e9, policy_check_min_steps=10**9
        )
        kernel = build_kernel(settings)
        try:
            kernel.migrate()
            created = kernel.tenancy.create_tenant("bench")
            admin = kernel.tenancy.authenticate(created.api_key)
            agent = kernel.tenancy.create_agent(admin, "agent", 1_000_000)
            _rules(kernel, admin, rules)
            run = kernel.runs.submit(admin, agent_id=agent.id, plan=echo_chain_plan(3)).run
            checker = kernel.checker
            step = NextStep(0, "llm.chat", chat_params("hello"))
            watch = RunWatch()

            reads: list[float] = []
            for _ in range(rereads):
                started = time.perf_counter()
                checker.reread(run, watch, kernel.clock.now_ms())
                reads.append((time.perf_counter() - started) * 1000)

            between: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                result = checker.check_before_step(run, step, Usage(), cost_micros=0, watch=watch)
                between.append((time.perf_counter() - started) * 1000)
                if result.decision is not CheckDecision.CONTINUE:
                    raise SystemExit(f"unexpected decision {result.decision}: {result.reason}")
            if watch.reads != rereads:
                raise SystemExit(f"{watch.reads - rereads} re-reads happened between checks")
        finally:
            kernel.close()
    p99 = percentile(between, 99)
    print(
        f"{db:8s} rules={rules:3d}  check between re-reads: p50 {percentile(between, 50):.4f} ms"
        f"  p99 {p99:.4f} ms  ({calls} calls; target p99 < {TARGET_P99_MS} ms:"
        f" {'met' if p99 < TARGET_P99_MS else 'MISSED'})"
    )
    print(
        f"{db:8s} rules={rules:3d}  re-read:                p50 {percentile(reads, 50):.3f} ms"
        f"  p99 {percentile(reads, 99):.3f} ms  ({rereads} re-reads)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=DB_KINDS, action="append")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rereads", type=int, default=200)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args(argv)
    for db in args.db or list(DB_KINDS):
        measure(db, args.calls, args.rereads, args.rules, args.postgres_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
