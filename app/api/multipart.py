"""A multipart/form-data body as a client library writes it, split in C-speed passes.

Starlette's parser (python-multipart) walks the body through Python callbacks: about 80 us of
a predict request's ~1 ms at full load. A form from curl, httpx, requests or a browser has one
layout: the boundary from the ``Content-Type`` header, parts with a ``Content-Disposition`` of
``form-data; name="..."`` (and ``filename="..."`` for files) and maybe a ``Content-Type``. That
layout is split here with ``bytes.split``; anything else (a preamble, other headers, quoted or
encoded names, a charset, a field that is not UTF-8, more parts than the form can hold) gives
``None``, and the caller hands the body to Starlette's parser, which accepts or refuses it with
its own messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r'multipart/form-data;\s*boundary=("?)([0-9A-Za-z\'()+_,./:=?-]{1,70})\1\s*', re.I)
_DISPOSITION = re.compile(rb'form-data; name="([A-Za-z_]{1,32})"(?:; filename="([^"\\\r\n%]{0,255})")?')


@dataclass(frozen=True, slots=True)
class FilePart:
    """A part that came with a ``filename``: the file's bytes."""

    filename: str
    data: bytes


def split_form(body: bytes, content_type: str, max_parts: int) -> list[tuple[str, str | FilePart]] | None:
    """The parts of ``body`` in order (fields decoded as UTF-8), or ``None`` for the general parser."""
    found = _BOUNDARY.fullmatch(content_type)
    if found is None:
        return None
    delimiter = b"--" + found.group(2).encode()
    if not body.startswith(delimiter + b"\r\n"):
        return None
    end = body.rfind(b"\r\n" + delimiter + b"--")
    if end < 0 or body[end + len(delimiter) + 4 :] not in (b"", b"\r\n"):
        return None
    parts = body[len(delimiter) + 2 : end].split(b"\r\n" + delimiter + b"\r\n")
    if len(parts) > max_parts:
        return None
    items: list[tuple[str, str | FilePart]] = []
    for part in parts:
        head_end = part.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        disposition = None
        for line in part[:head_end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            header = name.strip().lower()
            if header == b"content-disposition" and disposition is None:
                disposition = _DISPOSITION.fullmatch(value.strip())
            elif header != b"content-type":
                return None
        if disposition is None:
            return None
        data = part[head_end + 4 :]
        key, filename = disposition.group(1).decode(), disposition.group(2)
        if filename is not None:
            items.append((key, FilePart(filename.decode("latin-1"), data)))
            continue
        try:
            items.append((key, data.decode("utf-8")))
        except UnicodeDecodeError:
            return None
    return items
