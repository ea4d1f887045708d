"""What the stress scripts share: request bodies, a raw-socket HTTP exchange that tells a refusal
at connect from an answer and from a connection lost without one, server-side request counts
from ``/metrics``, and a scratch copy of the model repository that reload scripts may change."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.server import ROOT

EXAMPLES = ROOT / "examples"
ADMIN_KEY = "stress-admin"
CONTROL_ENV = {"FUSION_REPOSITORY_CONTROL": "true", "FUSION_ADMIN_API_KEY": ADMIN_KEY}
TEXTS = {"un": "1", "deux": "2", "trois": "3", "quatre": "4", "cinq": "5", "six": "6", "sept": "7"}
"""Words whose answer (text-only, committed models) is known, so a swapped answer shows."""


def media_body(text: str = "sept") -> bytes:
    """The README's example request: a real PNG digit, a real WAV clip, a text."""
    image = base64.b64encode((EXAMPLES / "seven.png").read_bytes()).decode()
    audio = base64.b64encode((EXAMPLES / "seven.wav").read_bytes()).decode()
    return json.dumps({"image": {"b64": image}, "audio": {"b64": audio}, "text": text}).encode()


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """One HTTP/1.1 request, closing the connection after it."""
    lines = [f"{method} {path} HTTP/1.1", "Host: stress", "Connection: close"]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True)
class Exchange:
    """How one request over a fresh connection ended.

    Attributes:
        outcome: ``answered`` (a full response), ``refused`` (connection refused at connect), or
            ``lost`` (connected, then closed or reset before a full response).
        status: the HTTP status when answered, else 0.
        body: the response body when answered.
    """

    outcome: str
    status: int = 0
    body: bytes = b""


def exchange(port: int, request: bytes, timeout: float = 30.0) -> Exchange:
    """Send ``request`` on a new connection to 127.0.0.1:``port`` and read the whole answer."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return Exchange("refused")
    with sock:
        try:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            return Exchange("lost")
    head, sep, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", head)
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if not sep or not match or not length or len(body) < int(length.group(1)):
        return Exchange("lost")
    return Exchange("answered", int(match.group(1)), body[: int(length.group(1))])


def request_counts(url: str) -> dict[str, int]:
    """Requests the server has counted in ``fusion_requests_total``: ``all``, ``5xx`` (server
    faults: 500-599 except 503), ``503`` (not ready / busy: an answer, not a fault)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts = {"all": 0, "5xx": 0, "503": 0}
    for labels, value in re.findall(r"^fusion_requests_total\{(.*)\} ([\d.e+]+)$", text, re.MULTILINE):
        count = int(float(value))
        counts["all"] += count
        if 'status="503"' in labels:
            counts["503"] += count
        elif re.search(r'status="5\d\d"', labels):
            counts["5xx"] += count
    return counts


def scratch_models() -> Path:
    """A temporary copy of the committed model repository (the caller deletes it)."""
    folder = Path(tempfile.mkdtemp(prefix="fusion-stress-")) / "models"
    shutil.copytree(ROOT / "models", folder, ignore=shutil.ignore_patterns("*.png", "*.md", "*.json.bak"))
    return folder


def report(name: str, counts: Mapping[str, int | float], ok: bool) -> None:
    """Print one line of counts, ``name: key=value ... -> PASS|FAIL``."""
    cells = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in counts.items())
    print(f"{name}: {cells} -> {'PASS' if ok else 'FAIL'}", flush=True)
