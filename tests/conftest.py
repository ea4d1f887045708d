"""Shared test configuration. Package-specific fixtures live in ``tests/<package>/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so ``app`` and ``training`` import without an editable install
    sys.path.insert(0, str(ROOT))
