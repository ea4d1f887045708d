"""Media decoding shared by the server and the trainer: bytes or arrays -> model tensors.

One implementation, so what a model saw in training is exactly what it sees when served.
Every failure is a :class:`MediaError` naming the modality and what was wrong.
"""

from app.media.adjust import Adjusted
from app.media.audio import DEFAULT_SAMPLE_RATE, DEFAULT_SAMPLES, audio_from_array, decode_audio
from app.media.errors import MediaError, MediaTooLarge
from app.media.image import DEFAULT_CHANNELS, DEFAULT_SIZE, decode_image, image_from_array, normalize_digit
from app.media.text import DEFAULT_MAX_BYTES, decode_text, encode_text

MODALITIES: tuple[str, ...] = ("image", "audio", "text")
"""The modality order of the ``mask`` input: mask[:, i] is 1 when MODALITIES[i] is present."""

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SAMPLES",
    "DEFAULT_SAMPLE_RATE",
    "DEFAULT_SIZE",
    "MODALITIES",
    "Adjusted",
    "MediaError",
    "MediaTooLarge",
    "audio_from_array",
    "decode_audio",
    "decode_image",
    "decode_text",
    "encode_text",
    "image_from_array",
    "normalize_digit",
]
