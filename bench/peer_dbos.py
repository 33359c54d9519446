"""The same workload as durable DBOS workflows: one ``@DBOS.workflow`` of ``steps``
``@DBOS.step`` calls, each calling runkernel's own ``llm.chat`` skill on ``echo-1`` (so the
work per step is identical), enqueued on a DBOS queue from client threads.

    .venv/bin/python bench/peer_dbos.py --db sqlite --runs 1000 --repeat 3

Workflows/s counts from the first enqueue to the moment every workflow is final. Latencies
come from DBOS's ``workflow_status`` (``dequeued_at`` and ``completed_at`` minus
``created_at``); on SQLite DBOS stores them in whole seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import partial

from dbos import DBOS, DBOSConfig

from databases import DbKind, fresh_database
from harness import (
    DbosLimit,
    Workload,
    add_dbos_limit_argument,
    build_measurement,
    parser_for,
    repeat,
    report,
    submit_and_wait,
)
from results import Measurement
from runkernel.adapters.skills import SkillRegistry, build_default_registry
from runkernel.config import Settings
from runkernel.domain.skills import SkillContext
from workload import FIRST_MESSAGE, chat_params, next_message, step_id

QUEUE = "rk_bench"
UNFINISHED = ["ENQUEUED", "PENDING"]
_skills: SkillRegistry | None = None


def chat(index: int, content: str) -> str:
    """One ``echo-1`` chat call through runkernel's skill registry; returns the answer."""
    assert _skills is not None, "measure_dbos() sets the skills up"
    context = SkillContext(run_id="dbos", tenant_id="bench", step_id=step_id(index), attempt=1)
    result = _skills.invoke("llm.chat", chat_params(content), context)
    if result.error is not None:
        raise RuntimeError(result.error)
    answer: str = result.output["content"]
    return answer


def chain(steps: int, call: Callable[[int, str], str]) -> str:
    """The workflow's logic, shared by the workflow and the check of its output."""
    answer = call(0, FIRST_MESSAGE)
    for index in range(1, steps):
        answer = call(index, next_message(answer))
    return answer


chat_step = DBOS.step(name="chat")(chat)


@DBOS.workflow(name="echo_chain")
def echo_chain(steps: int) -> str:
    return chain(steps, chat_step)


def measure_dbos(
    db: DbKind,
    workload: Workload,
    postgres_url: str | None = None,
    *,
    limit: DbosLimit = "executor",
) -> Measurement:
    """Launch DBOS on a fresh system database, run the workload, destroy DBOS.

    ``limit`` says where ``workload.concurrency`` applies: ``executor`` caps DBOS's
    workflow thread pool (``max_executor_threads``) and leaves the queue unbounded;
    ``queue`` sets the queue's ``worker_concurrency``, which with the default 1 s queue
    polling admits at most that many workflows per second."""
    global _skills
    _skills = build_default_registry(Settings())
    try:
        with fresh_database(db, postgres_url=postgres_url) as url:
            DBOS(config=_config(url, workload, limit))
            try:
                DBOS.launch()
                return _drive(db, workload, limit)
            finally:
                DBOS.destroy(workflow_completion_timeout_sec=0)
    finally:
        _skills.close()
        _skills = None


def _config(url: str, workload: Workload, limit: DbosLimit) -> DBOSConfig:
    config: DBOSConfig = {"name": "rk-bench", "system_database_url": url, "log_level": "WARNING"}
    if limit == "executor":
        config["max_executor_threads"] = workload.concurrency
    return config


def _drive(db: DbKind, workload: Workload, limit: DbosLimit) -> Measurement:
    queue = DBOS.register_queue(
        QUEUE, worker_concurrency=workload.concurrency if limit == "queue" else None
    )
    span = submit_and_wait(
        workload,
        lambda: queue.enqueue(echo_chain, workload.steps),
        lambda: (
            not DBOS.list_workflows(
                queue_name=QUEUE, status=UNFINISHED, limit=1, load_input=False, load_output=False
            )
        ),
    )
    statuses = DBOS.list_workflows(queue_name=QUEUE, load_input=False)
    expected = chain(workload.steps, chat)
    succeeded = sum(1 for s in statuses if s.status == "SUCCESS" and s.output == expected)
    timings = [(s.created_at or 0, s.dequeued_at, s.completed_at) for s in statuses]
    system = "dbos" if limit == "executor" else "dbos-queue"
    return build_measurement(system, db, workload, timings, span=span, succeeded=succeeded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_for(__doc__.split("\n\n")[0])
    add_dbos_limit_argument(parser)
    args = parser.parse_args(argv)
    return report(repeat(partial(measure_dbos, limit=args.dbos_limit), args), as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
