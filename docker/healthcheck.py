#!/usr/bin/env python
"""The image's HEALTHCHECK: exit 0 when the server in this container is ready, 1 otherwise.

A command with no arguments, installed as ``fusionserve-healthcheck``: Podman's Docker API (4.3)
splits a compose healthcheck's arguments at every space, so ``python -c "<code>"`` arrived as
many broken words. Standard library only, so it runs on the image's Python whatever the venv holds.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Ask ``/health/ready`` on this container's own port; 200 means ready."""
    url = f"http://127.0.0.1:{os.environ.get('FUSION_PORT', '8000')}/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
