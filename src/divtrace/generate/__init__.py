"""Sampling K outputs per prompt from a checkpoint: parameters, prompt rendering, backends and resumable storage.

Backends implement :class:`~divtrace.generate.protocol.Generator`; :func:`~divtrace.generate.backends.create_generator`
builds one by name (``transformers``, ``vllm``, ``openai``) without importing the others' heavy dependencies.
"""

from divtrace.generate.params import SamplingParams, UnsupportedSamplingError
from divtrace.generate.protocol import Completion, GenerationRequest, Generator
from divtrace.generate.thinking import ThinkingMode, split_thinking

__all__ = [
    "Completion",
    "GenerationRequest",
    "Generator",
    "SamplingParams",
    "ThinkingMode",
    "UnsupportedSamplingError",
    "split_thinking",
]
