"""Verifiers for the verifiable tasks; importing this package registers the built-in ones."""

# Imported for their registrations: gsm8k, math (math); ifeval (ifeval); humaneval, mbpp, cruxeval (code).
from divtrace.tasks.verifiers import code, ifeval, math  # noqa: F401
from divtrace.tasks.verifiers.base import Verdict, Verifier, create_verifier, register_verifier, verifier_names

__all__ = ["Verdict", "Verifier", "create_verifier", "register_verifier", "verifier_names"]
