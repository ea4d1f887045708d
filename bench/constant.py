"""The transport limit: the same server stack, answering a constant after reading the body.

``create_app()`` builds the real fusionserve app (same middleware, same server) and adds one
route that reads and discards the request body, then returns a fixed prediction-sized JSON.
Throughput against it is the ceiling the real predict route is compared with.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.config import load_settings
from app.main import create_app as create_real_app
from app.server import serve

CONSTANT = (
    b'{"model":"late","version":1,"label":"7","label_index":7,'
    b'"probabilities":[{"label":"7","probability":0.9}],'
    b'"modalities_used":["image","audio","text"],"modalities_missing":[],'
    b'"contributions":null,"explain_method":null}'
)


def create_app() -> FastAPI:
    app = create_real_app()

    @app.post("/bench/constant/{name}", include_in_schema=False)
    async def constant(name: str, request: Request) -> Response:
        await request.body()
        return Response(CONSTANT, media_type="application/json")

    return app


def main() -> None:
    """``python -m bench.constant``: serve it exactly as ``python -m app`` serves the real app."""
    serve(create_app(), load_settings())


if __name__ == "__main__":
    main()
