"""The Open Inference Protocol (KServe V2) for tensor clients: codec, schemas, model adaptation.

Pure functions and data classes with no web framework in them; ``app.api.routes.v2`` is the
thin HTTP layer on top, and inference goes through the same service and batcher as ``/v1``.
"""

from app.v2.adapt import to_model_inputs
from app.v2.codec import MAX_ELEMENTS, load_json_object, parse_header_length, parse_infer_request
from app.v2.datatypes import DATATYPES, numpy_dtype, v2_datatype
from app.v2.errors import V2Error
from app.v2.response import HEADER_LENGTH, check_outputs, classify, encode_infer_response
from app.v2.schemas import InferRequest, RequestedOutput

__all__ = [
    "DATATYPES",
    "HEADER_LENGTH",
    "MAX_ELEMENTS",
    "InferRequest",
    "RequestedOutput",
    "V2Error",
    "check_outputs",
    "classify",
    "encode_infer_response",
    "load_json_object",
    "numpy_dtype",
    "parse_header_length",
    "parse_infer_request",
    "to_model_inputs",
    "v2_datatype",
]
