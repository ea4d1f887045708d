"""Repository control is off unless enabled, and needs its own key when one is set; CORS allow-list.

Regression tests for issue 11 finding 9 (this half): anyone could unload models, and a web page
on another site could fire a "simple" cross-site POST at ``.../unload``.
"""

from __future__ import annotations

import httpx
import pytest

from app.config import load_settings
from app.errors import ConfigError
from tests.app.conftest import Serve

pytestmark = pytest.mark.asyncio(loop_scope="session")
CONTROL = ["/v2/repository/index", "/v2/repository/models/late/load", "/v2/repository/models/late/unload"]
EVIL = {"Origin": "http://evil.example", "Content-Type": "text/plain"}


async def test_repository_control_is_off_by_default(client: httpx.AsyncClient) -> None:
    for path in CONTROL:
        response = await client.post(path, json={})
        assert response.status_code == 403, path
        assert "FUSION_REPOSITORY_CONTROL" in response.json()["error"]
        cross_site = await client.post(path, headers=EVIL, content=b"{}")  # a page on another site
        assert cross_site.status_code in (403, 415), path  # 415: not JSON, refused before control
        assert "access-control-allow-origin" not in cross_site.headers
    assert (await client.get("/v1/models/late/ready")).status_code == 200  # nothing was unloaded


async def test_without_the_api_key_a_stranger_gets_401_not_403(make_client: Serve) -> None:
    async with make_client(api_key="k") as c:
        assert (await c.post("/v2/repository/index")).status_code == 401
        assert (await c.post("/v2/repository/index", headers={"X-API-Key": "k"})).status_code == 403


async def test_the_admin_key_guards_control_and_only_control(make_client: Serve) -> None:
    async with make_client(api_key="user", admin_api_key="admin", repository_control=True) as c:
        for headers in ({}, {"X-API-Key": "user"}, {"Authorization": "Bearer wrong"}):
            denied = await c.post("/v2/repository/index", headers=headers)
            assert denied.status_code == 401 and "admin key" in denied.json()["error"], headers
        assert (await c.post("/v2/repository/index", headers={"X-API-Key": "admin"})).status_code == 200
        unload = await c.post("/v2/repository/models/late/unload", headers={"Authorization": "Bearer admin"})
        assert unload.json() == {"name": "late", "version": None, "ready": False}
        assert (await c.get("/v1/models", headers={"X-API-Key": "admin"})).status_code == 401
        assert (await c.get("/v1/models", headers={"X-API-Key": "user"})).status_code == 200


async def test_control_on_without_an_admin_key_follows_the_api_key(make_client: Serve) -> None:
    async with make_client(repository_control=True) as c:
        assert (await c.post("/v2/repository/index")).status_code == 200
    async with make_client(api_key="k", repository_control=True) as c:
        assert (await c.post("/v2/repository/index")).status_code == 401
        assert (await c.post("/v2/repository/index", headers={"X-API-Key": "k"})).status_code == 200


async def test_an_admin_key_without_control_stops_the_server_at_start() -> None:
    with pytest.raises(ConfigError, match="FUSION_REPOSITORY_CONTROL=true"):
        load_settings(admin_api_key="admin")
    assert load_settings(admin_api_key=" ").admin_api_key is None  # empty means unset


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models", headers={"Origin": "http://app.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    preflight = await client.options(
        "/v1/models/late/predict",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_allow_list(make_client: Serve) -> None:
    async with make_client(cors_origins="http://app.example, https://ui.example:8443") as c:
        preflight = await c.options(
            "/v1/models/late/predict",
            headers={
                "Origin": "https://ui.example:8443",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key, x-request-id",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://ui.example:8443"
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"content-type", "x-api-key", "x-request-id"} <= {h.strip() for h in allowed.split(",")}
        answer = await c.post(
            "/v1/models/late/predict", json={"text": "x"}, headers={"Origin": "http://app.example"}
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://app.example"
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
        evil = await c.options(
            "/v1/models/late/predict",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers


@pytest.mark.parametrize("value", ["app.example", "http://app.example/path", "ftp://x.example"])
async def test_a_cors_origin_that_is_not_an_origin_stops_the_server(value: str) -> None:
    with pytest.raises(ConfigError, match="FUSION_CORS_ORIGINS"):
        load_settings(cors_origins=value)


async def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_CORS_ORIGINS", "http://a.example,*")
    assert load_settings().cors_origins == ["http://a.example", "*"]
    monkeypatch.setenv("FUSION_CORS_ORIGINS", "")
    assert load_settings().cors_origins == []
