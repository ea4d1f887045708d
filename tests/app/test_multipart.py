"""The quick multipart splitter: the same parts as Starlette's parser, or ``None`` to let it decide."""

from __future__ import annotations

import httpx
import pytest

from app.api.multipart import FilePart, split_form
from tests.app.conftest import PNG, WAV


def encoded(files: dict[str, tuple[str, bytes, str]], data: dict[str, str]) -> tuple[bytes, str]:
    """A body and its content type exactly as httpx (like curl and browsers) writes them."""
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_a_client_form_is_split_into_its_parts_in_order() -> None:
    body, ctype = encoded(
        {"image": ("d.png", PNG, "image/png"), "audio": ("d.wav", WAV, "audio/wav")}, {"text": "sept é"}
    )
    items = split_form(body, ctype, 9)
    assert items is not None
    assert dict(items) == {"text": "sept é", "image": FilePart("d.png", PNG), "audio": FilePart("d.wav", WAV)}


B = "multipart/form-data; boundary=xyz"
PART = b'--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nsept\r\n'


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"preamble\r\n" + PART + b"--xyz--\r\n", B),  # a preamble before the first part
        (PART + b"--xyz--\r\n", B + "; charset=latin-1"),  # a charset for the fields
        (PART.replace(b"sept", b"sept\xff") + b"--xyz--\r\n", B),  # a field that is not UTF-8
        (PART.replace(b"form-data;", b"form-data ;") + b"--xyz--\r\n", B),  # an unusual disposition
        (PART.replace(b'name="text"', b'name="te\\"xt"') + b"--xyz--\r\n", B),  # an escaped name
        (PART.replace(b"\r\n\r\n", b"\r\nX-Other: 1\r\n\r\n") + b"--xyz--\r\n", B),  # another header
        (PART + b"--xyz--\r\ntrailing", B),  # an epilogue
        (PART, B),  # no closing delimiter
        (PART * 10 + b"--xyz--\r\n", B),  # more parts than the form holds
        (PART + b"--xyz--\r\n", "multipart/form-data"),  # no boundary
    ],
)
def test_anything_unusual_goes_to_the_general_parser(body: bytes, ctype: str) -> None:
    assert split_form(body, ctype, 9) is None


def test_quoted_boundary_and_empty_filename() -> None:
    body = b'--a.b\r\nContent-Disposition: form-data; name="image"; filename=""\r\n\r\n\x00\r\n--a.b--'
    assert split_form(body, 'multipart/form-data; boundary="a.b"', 9) == [("image", FilePart("", b"\x00"))]


@pytest.mark.asyncio(loop_scope="session")
async def test_the_general_parser_still_answers_what_the_splitter_declines(client: httpx.AsyncClient) -> None:
    body = PART.replace(b"\r\n\r\n", b"\r\nX-Other: 1\r\n\r\n") + b"--xyz--\r\n"
    answer = await client.post("/v1/models/late/predict", content=body, headers={"content-type": B})
    assert answer.status_code == 200 and answer.json()["modalities_used"] == ["text"]
    latin = PART.replace(b"sept", b"sept\xff") + b"--xyz--\r\n"
    refused = await client.post("/v1/models/late/predict", content=latin, headers={"content-type": B})
    assert refused.status_code == 400 and "not UTF-8" in refused.json()["error"]
