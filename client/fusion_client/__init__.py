"""fusionserve's Python SDK: :class:`Client`, :class:`AsyncClient`, typed answers, one error tree.

Example::

    from fusion_client import Client

    with Client() as client:  # $FUSION_URL and $FUSION_API_KEY, or base_url= and api_key=
        answer = client.predict("late", image="digit.png", audio="seven.wav", text="sept")
        print(answer.label, answer.probabilities[0].probability)
"""

from fusion_client._async_client import AsyncClient
from fusion_client._client import Client
from fusion_client._exceptions import (
    APIError,
    AuthenticationError,
    ConnectError,
    DecodeError,
    FusionError,
    InvalidInput,
    NotFound,
    ServerError,
    Timeout,
    TransportError,
    Unavailable,
)
from fusion_client._specs import Adjustment, InputSpec
from fusion_client._types import (
    Abstention,
    Agreement,
    ClassProbability,
    Dissent,
    Explanation,
    ModelInfo,
    ModelSummary,
    Opinion,
    Prediction,
)
from fusion_client._version import __version__

__all__ = [
    "APIError",
    "Abstention",
    "Adjustment",
    "Agreement",
    "AsyncClient",
    "AuthenticationError",
    "ClassProbability",
    "Client",
    "ConnectError",
    "DecodeError",
    "Dissent",
    "Explanation",
    "FusionError",
    "InputSpec",
    "InvalidInput",
    "ModelInfo",
    "ModelSummary",
    "NotFound",
    "Opinion",
    "Prediction",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unavailable",
    "__version__",
]
