"""``python -m training``: the training command line (see :mod:`training.cli`)."""

from training import seeds  # noqa: F401  (registers the ``seeds`` command on the app)
from training.cli import app

app(prog_name="python -m training")
