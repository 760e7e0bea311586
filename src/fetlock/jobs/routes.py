"""The jobs page: queue counts and parked jobs, which administrators retry."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth.deps import Principal, require_roles
from fetlock.jobs import service
from fetlock.jobs.models import Job
from fetlock.web.deps import get_db_session
from fetlock.web.errors import Conflict
from fetlock.web.templating import render

router = APIRouter()

# Administrators only: require_roles() with no role admits admins alone.
admin_only = require_roles()


class JobOut(BaseModel):
    id: int
    name: str
    args: dict[str, int | str]
    state: str
    attempts: int
    last_error: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            name=job.name,
            args=json.loads(job.args_json),
            state=job.state,
            attempts=job.attempts,
            last_error=job.last_error,
        )


class JobsOut(BaseModel):
    counts: dict[str, int]
    parked: list[JobOut]


@router.get("/admin/jobs", include_in_schema=False)
def jobs_page(
    request: Request,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    return render(
        request,
        "jobs/jobs.html",
        {
            "principal": principal,
            "counts": service.count_by_state(db_session),
            "parked": service.parked_jobs(db_session),
        },
    )


def _retry(db_session: Session, principal: Principal, job_id: int) -> Job:
    job = service.retry_parked(db_session, job_id)
    if job is None:
        raise Conflict(
            f"job {job_id} is not parked (it may have been retried or finished); "
            "reload the jobs page",
            field="job_id",
            value=job_id,
        )
    audit.record(
        db_session,
        principal.actor,
        "job.retried",
        "job",
        job.id,
        detail={"name": job.name, "args": job.args_json},
    )
    return job


@router.post("/admin/jobs/{job_id}/retry", include_in_schema=False)
def retry_form(
    job_id: int,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    _retry(db_session, principal, job_id)
    return RedirectResponse("/admin/jobs", status_code=303)


@router.get("/api/v1/jobs", tags=["jobs"])
def list_jobs(
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> JobsOut:
    """Jobs per state, and the parked ones with their last error."""
    return JobsOut(
        counts=service.count_by_state(db_session),
        parked=[JobOut.of(j) for j in service.parked_jobs(db_session)],
    )


@router.post("/api/v1/jobs/{job_id}/retry", tags=["jobs"])
def retry_job(
    job_id: int,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> JobOut:
    """Queue a parked job again with a fresh set of attempts."""
    return JobOut.of(_retry(db_session, principal, job_id))
