"""``python -m training``: the training command line (see :mod:`training.cli`)."""

from training.cli import app

app(prog_name="python -m training")
