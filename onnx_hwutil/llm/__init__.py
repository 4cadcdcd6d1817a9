"""Decoder LLMs: the KV cache found in the graph (detect), each phase bound and mapped (phases), and the
questions `onnx-hwutil llm` answers (study)."""

from .detect import Decoder, find_decoder
from .study import Query, study

__all__ = ["Decoder", "Query", "find_decoder", "study"]
