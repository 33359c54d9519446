"""Reviewing a tenant's lessons: list, convert to a policy rule, defer, dismiss.

Converting adopts the lesson's proposed rule as an ACTIVE rule at once, in the same
transaction as the lesson's move to ``converted_to_draft``. That is safe because every
proposal is a WARN rule scoped to the lesson's agent (``runkernel.domain.lessons``): it
flags future runs, it never fails one. Making it block is a separate, explicit change
(``PATCH /api/v1/policies/{id}``). Who may convert, defer or dismiss is decided by the
role table (``runkernel.domain.permissions``).
"""

from __future__ import annotations

from collections.abc import Callable

from runkernel.domain import lessons as domain
from runkernel.domain import policy
from runkernel.domain.ids import new_id
from runkernel.domain.lessons import Lesson, LessonState
from runkernel.domain.permissions import Permission, require
from runkernel.domain.policy import PolicyRule
from runkernel.domain.records import Principal
from runkernel.errors import ConflictError, NotFoundError
from runkernel.services.paging import check_choice, check_limit, page
from runkernel.services.policies import add_rule
from runkernel.services.ports import Clock, UnitOfWork, UnitOfWorkFactory


class LessonService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def search(
        self,
        principal: Principal,
        *,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Lesson], str | None]:
        """One page, newest first, and the cursor of the next page (or None)."""
        require(principal, Permission.READ_LESSONS)
        check_choice("state", state, LessonState)
        check_limit(limit)
        with self._uow(read_only=True) as uow:
            found = uow.lessons.search(
                principal.tenant_id, state=state, limit=limit + 1, before_id=cursor
            )
        return page(found, limit, key=lambda lesson: lesson.id)

    def get(self, principal: Principal, lesson_id: str) -> Lesson:
        require(principal, Permission.READ_LESSONS)
        with self._uow(read_only=True) as uow:
            return _load(uow, principal, lesson_id)

    def convert(self, principal: Principal, lesson_id: str) -> tuple[Lesson, PolicyRule]:
        """The lesson, now ``converted_to_draft``, and the rule created from its proposal.
        A lesson without a proposal, or one already final, is a ``ConflictError``."""
        require(principal, Permission.CONVERT_LESSON)
        now = self._clock.now_ms()
        with self._uow() as uow:
            found = _load(uow, principal, lesson_id)
            lesson, draft = domain.convert(found, now)
            rule = policy.new_rule(
                id=new_id("pol"), tenant_id=principal.tenant_id, now_ms=now, **draft
            )
            _store(uow, lesson, found.state)
            add_rule(uow, rule)
            uow.commit()
        return lesson, rule

    def defer(self, principal: Principal, lesson_id: str) -> Lesson:
        require(principal, Permission.DEFER_LESSON)
        return self._move(principal, lesson_id, domain.defer)

    def dismiss(self, principal: Principal, lesson_id: str) -> Lesson:
        require(principal, Permission.DISMISS_LESSON)
        return self._move(principal, lesson_id, domain.dismiss)

    def _move(
        self, principal: Principal, lesson_id: str, move: Callable[[Lesson, int], Lesson]
    ) -> Lesson:
        with self._uow() as uow:
            found = _load(uow, principal, lesson_id)
            lesson = move(found, self._clock.now_ms())
            _store(uow, lesson, found.state)
            uow.commit()
        return lesson


def _store(uow: UnitOfWork, lesson: Lesson, was: LessonState) -> None:
    # Conditional on the state just read: two concurrent converts must not adopt the
    # proposal twice.
    if not uow.lessons.update(lesson, expected_state=was):
        raise ConflictError(
            f"lesson {lesson.id} was changed by someone else meanwhile; read it again",
            code="lesson_changed",
        )


def _load(uow: UnitOfWork, principal: Principal, lesson_id: str) -> Lesson:
    lesson = uow.lessons.get(principal.tenant_id, lesson_id)
    if lesson is None:
        raise NotFoundError(f"no lesson {lesson_id!r}")
    return lesson
