"""SQL for lessons, deduplicated by a unique key. Repositories never commit, roll back or
begin (DESIGN invariant 3)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select, update

from runkernel.adapters.db.inserts import insert_ignore
from runkernel.adapters.db.tables import lessons
from runkernel.domain.lessons import Lesson, LessonKind, LessonState

_INSERT_LESSON = lessons


class SqlLessonRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, lesson: Lesson) -> bool:
        """Insert unless a lesson with the same dedupe key exists (then False)."""
        result = self._conn.execute(
            insert_ignore(_INSERT_LESSON, self._conn), _lesson_values(lesson)
        )
        return result.first() is not None

    def get(self, tenant_id: str, lesson_id: str) -> Lesson | None:
        row = self._conn.execute(
            select(lessons).where(lessons.c.tenant_id == tenant_id, lessons.c.id == lesson_id)
        ).first()
        return lesson_from_row(row) if row else None

    def search(
        self,
        tenant_id: str,
        *,
        state: str | None = None,
        limit: int = 50,
        before_id: str | None = None,
    ) -> list[Lesson]:
        query = select(lessons).where(lessons.c.tenant_id == tenant_id)
        if state:
            query = query.where(lessons.c.state == state)
        if before_id:
            query = query.where(lessons.c.id < before_id)
        rows = self._conn.execute(query.order_by(lessons.c.id.desc()).limit(limit))
        return [lesson_from_row(r) for r in rows]

    def update(self, lesson: Lesson, *, expected_state: LessonState) -> bool:
        """Store a state change; False when the lesson is no longer ``expected_state``."""
        result = self._conn.execute(
            update(lessons)
            .where(lessons.c.id == lesson.id, lessons.c.state == expected_state.value)
            .values(state=lesson.state.value, updated_at_ms=lesson.updated_at_ms)
        )
        return result.rowcount == 1


def _lesson_values(lesson: Lesson) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "tenant_id": lesson.tenant_id,
        "agent_id": lesson.agent_id,
        "run_id": lesson.run_id,
        "kind": lesson.kind.value,
        "dedupe_key": lesson.dedupe_key,
        "state": lesson.state.value,
        "title": lesson.title,
        "detail": lesson.detail,
        "proposed_rule": lesson.proposed_rule,
        "created_at_ms": lesson.created_at_ms,
        "updated_at_ms": lesson.updated_at_ms,
    }


def lesson_from_row(r: Row[Any]) -> Lesson:
    return Lesson(
        id=r.id,
        tenant_id=r.tenant_id,
        agent_id=r.agent_id,
        run_id=r.run_id,
        kind=LessonKind(r.kind),
        dedupe_key=r.dedupe_key,
        state=LessonState(r.state),
        title=r.title,
        detail=r.detail,
        proposed_rule=r.proposed_rule,
        created_at_ms=r.created_at_ms,
        updated_at_ms=r.updated_at_ms,
    )
