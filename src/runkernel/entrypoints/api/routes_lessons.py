"""``/api/v1/lessons``: what finished runs taught, and the review of each lesson
(pending → converted_to_draft | deferred | dismissed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from runkernel.domain.lessons import LessonState
from runkernel.entrypoints.api import views_governance as views
from runkernel.entrypoints.api.auth import PrincipalDep
from runkernel.entrypoints.api.governance import GovernanceDep
from runkernel.entrypoints.api.ids import cursor_query, require_id
from runkernel.entrypoints.api.schemas import ERROR_RESPONSES, error_doc
from runkernel.entrypoints.api.schemas_governance import LessonConverted, LessonList, LessonOut

router = APIRouter(prefix="/api/v1/lessons", tags=["lessons"], responses=ERROR_RESPONSES)

FINAL = error_doc("the lesson is already converted or dismissed")


@router.get("")
def list_lessons(
    principal: PrincipalDep,
    services: GovernanceDep,
    state: LessonState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, cursor_query("lsn")] = None,
) -> LessonList:
    """Lessons of this tenant, newest first, one page at a time."""
    found, next_cursor = services.lessons.search(principal, state=state, limit=limit, cursor=cursor)
    return LessonList(lessons=[views.lesson(x) for x in found], next_cursor=next_cursor)


@router.get("/{lesson_id}")
def get_lesson(lesson_id: str, principal: PrincipalDep, services: GovernanceDep) -> LessonOut:
    return views.lesson(services.lessons.get(principal, require_id(lesson_id, "lesson")))


@router.post(
    "/{lesson_id}/convert",
    responses={
        403: error_doc("the key is not an admin key"),
        409: error_doc("the lesson is final or proposes no rule"),
    },
)
def convert_lesson(
    lesson_id: str, principal: PrincipalDep, services: GovernanceDep
) -> LessonConverted:
    """Adopt the lesson's proposed rule: it is created ACTIVE, as proposed — WARN, scoped
    to the lesson's agent — so it flags future runs but never fails one. Make it block
    with ``PATCH /api/v1/policies/{id}``."""
    lesson, rule = services.lessons.convert(principal, require_id(lesson_id, "lesson"))
    return LessonConverted(lesson=views.lesson(lesson), policy=views.policy(rule))


@router.post("/{lesson_id}/defer", responses={409: FINAL})
def defer_lesson(lesson_id: str, principal: PrincipalDep, services: GovernanceDep) -> LessonOut:
    return views.lesson(services.lessons.defer(principal, require_id(lesson_id, "lesson")))


@router.post("/{lesson_id}/dismiss", responses={409: FINAL})
def dismiss_lesson(lesson_id: str, principal: PrincipalDep, services: GovernanceDep) -> LessonOut:
    return views.lesson(services.lessons.dismiss(principal, require_id(lesson_id, "lesson")))
