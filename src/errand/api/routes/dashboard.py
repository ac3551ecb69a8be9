"""The admin dashboard: one server-rendered page plus the admin JSON routes it reads jobs from.

The page holds no data, so it is served without auth; the browser asks for the admin
token once, keeps it in sessionStorage, and sends it as a bearer token on every call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from errand import __version__
from errand.api.admin_schemas import AdminJobPage, AdminJobPublic
from errand.api.deps import Services, services
from errand.api.http.problems import ProblemRoute
from errand.api.http.responses import json_response
from errand.api.routes.admin import require_admin
from errand.errors import NotFound
from errand.jobids import QueueName
from errand.queue.recent import recent_jobs
from errand.queue.snapshot import JobSnapshot
from errand.queue.views import job_view

API_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = API_DIR / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
REFRESH_MS = 2000

# The page loads only its own script and stylesheet and talks only to this origin.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

templates = Jinja2Templates(directory=API_DIR / "templates")
router = APIRouter(prefix="/admin", tags=["admin"], route_class=ProblemRoute)


@router.get("/ui", include_in_schema=False)
async def dashboard_page(request: Request) -> Response:
    """The dashboard's HTML (no data in it, so no auth)."""
    context = {"version": __version__, "refresh_ms": REFRESH_MS, "queues": list(QueueName)}
    return templates.TemplateResponse(request, "dashboard.html", context, headers=PAGE_HEADERS)


@router.get("/ui/static/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> Response:
    """The dashboard's stylesheet and script (only files in api/static, no subfolders)."""
    path = STATIC_DIR / name
    media_type = STATIC_TYPES.get(path.suffix)
    if media_type is None or "/" in name or not path.is_file():
        raise NotFound(f"no dashboard asset {name!r}")
    return Response(
        path.read_bytes(),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def admin_job_view(snap: JobSnapshot) -> dict[str, object]:
    """The job view plus what only an admin sees: its name, data and attempt budget."""
    return {
        **job_view(snap),
        "clientId": snap.client_id,
        "name": snap.name,
        "data": snap.data,
        "priority": snap.priority,
        "maxAttempts": snap.max_attempts,
    }


@router.get("/jobs", dependencies=[Depends(require_admin)], response_model=AdminJobPage)
async def get_recent_jobs(
    queue: QueueName | None = Query(default=None),
    limit: int = Query(default=20, ge=1, le=100),
    svc: Services = Depends(services),
) -> Response:
    """The newest jobs of one queue or of all, newest first, whatever their state."""
    snaps = await recent_jobs(svc.queues, queue, limit)
    return json_response({"items": [admin_job_view(s) for s in snaps]})


@router.get("/jobs/{job_id}", dependencies=[Depends(require_admin)], response_model=AdminJobPublic)
async def get_admin_job(job_id: str, svc: Services = Depends(services)) -> Response:
    """One job with its data, attempts, error and webhook delivery."""
    return json_response(admin_job_view(await svc.queues.snapshot(job_id)))
