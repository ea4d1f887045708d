"""``python -m app``: serve the model repository (settings from ``FUSION_*`` variables)."""

from app.main import run

run()
