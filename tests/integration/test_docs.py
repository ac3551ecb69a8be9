"""GET /docs works offline: the page and every asset it loads come from errand itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from support.stack import Stack

EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
_ABSOLUTE_URL = re.compile(r"(?:https?:)?//[^\s'\"<>)]+")


class _References(HTMLParser):
    """Every `src` and `href` attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


async def test_docs_loads_every_asset_from_errand(stack: Stack) -> None:
    page = await stack.http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = references(page.text)
    assert {urlsplit(u).path.rsplit(".", 1)[-1] for u in urls} >= {"js", "css", "png"}, urls
    origin = urlsplit(stack.base_url).netloc
    for url in urls:
        absolute = urljoin(f"{stack.base_url}/docs", url)
        assert urlsplit(absolute).netloc == origin, f"{url} is not on errand's origin"
        asset = await stack.http.get(absolute)
        assert asset.status_code == 200, url
        suffix = "." + urlsplit(absolute).path.rsplit(".", 1)[-1]
        assert EXPECTED_TYPES[suffix] in asset.headers["content-type"], (url, asset.headers)
        assert len(asset.content) > 500, url
    # Nor any other outside address, in the inline script (the validator badge) or elsewhere.
    assert [u for u in _ABSOLUTE_URL.findall(page.text) if origin not in u] == []


async def test_the_spec_the_docs_page_loads_is_served(stack: Stack) -> None:
    page = await stack.http.get("/docs")
    [spec_url] = re.findall(r"url: '([^']+)'", page.text)
    spec = await stack.http.get(spec_url)
    assert spec.status_code == 200
    assert "/notifications/{job_id}/events" in spec.json()["paths"]


@pytest.mark.parametrize(
    "path", ["/redoc", "/docs/assets/swagger-ui.js.map", "/docs/assets/index.html"]
)
async def test_nothing_else_is_served_under_the_docs(stack: Stack, path: str) -> None:
    reply = await stack.http.get(path)
    assert reply.status_code == 404
