"""The one error type raised by media decoding.

Decoding knows nothing about HTTP: the server maps :class:`MediaError` to 400 and
:class:`MediaTooLarge` to 413; the trainer reports the file that failed.
"""

from __future__ import annotations


class MediaError(ValueError):
    """A payload could not be turned into a model tensor.

    Attributes:
        modality: ``"image"``, ``"audio"`` or ``"text"``: which payload was wrong.
        reason: a sentence a user can act on, without the modality prefix.
    """

    def __init__(self, modality: str, reason: str) -> None:
        self.modality = modality
        self.reason = reason
        super().__init__(f"{modality}: {reason}")


class MediaTooLarge(MediaError):
    """The payload is over a configured limit (pixels, seconds, characters).

    Raised before the expensive part of decoding, so an oversized payload costs
    only its header read.
    """
