"""GET /docs: Swagger UI with its script, stylesheet and icon served by errand, so it works offline.

The assets come from the `swagger-ui-bundle-v2` package (Swagger UI's own dist
files); FastAPI's default page loads them from a CDN. ReDoc is disabled: no
package ships its standalone bundle.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from swagger_ui_bundle import swagger_ui_path

from errand.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"

# The only files served: what the page references, by name.
ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> Response:
    """The Swagger UI page; every URL in it is on this origin (behind any root_path)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    assets = root + ASSETS_PATH
    return get_swagger_ui_html(
        openapi_url=root + OPENAPI_PATH,
        title="errand - API docs",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon-32x32.png",
        # Swagger UI's default validator badge is an image from an outside host.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSETS_PATH + "/{name}")
async def swagger_ui_asset(name: str) -> Response:
    """One of Swagger UI's files. Raises NotFound for any other name."""
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"no docs asset {name!r}")
    path = Path(str(swagger_ui_path)) / name
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})
