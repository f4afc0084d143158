"""``/docs`` and ``/redoc`` work offline: every script, style sheet and icon they reference is
served by the app itself, never fetched from a CDN (our users' servers often have no internet)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunelab.serve.app import create_app
from tunelab.serve.settings import ServeSettings

# src="...", href="...", and the spec url Swagger UI is given (url: '/openapi.json').
_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServeSettings(data_dir=tmp_path, db=None))
    with TestClient(app) as client:
        yield client


def references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_reference_no_external_host(client: TestClient, page: str) -> None:
    r = client.get(page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    # No absolute URL at all: a page that names any host (a CDN, fonts, a validator badge) would
    # need the internet to render. Relative paths stay on the server that served the page.
    assert re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", r.text) == [], r.text
    assert "http://" not in r.text and "https://" not in r.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_a_doc_page_references_is_served(client: TestClient, page: str) -> None:
    refs = references(client.get(page).text)
    scripts = [ref for ref in refs if ref.endswith(".js")]
    assert scripts, f"{page} references no script: {refs}"
    assert "/openapi.json" in refs
    for ref in refs:
        assert ref.startswith("/"), f"{page} references {ref!r}, not a path on this server"
        asset = client.get(ref)
        assert asset.status_code == 200, f"{page} -> {ref}: {asset.status_code}"
        assert len(asset.content) > 100, f"{page} -> {ref}: only {len(asset.content)} bytes"
    for ref in scripts:
        assert "javascript" in client.get(ref).headers["content-type"], ref


def test_swagger_ui_gets_its_bundle_and_style_sheet(client: TestClient) -> None:
    refs = references(client.get("/docs").text)
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in refs), refs
    css = [ref for ref in refs if ref.endswith(".css")]
    assert css and all("text/css" in client.get(ref).headers["content-type"] for ref in css)
