"""Verifiers for the verifiable tasks; importing this package registers the built-in ones."""

from divtrace.tasks.verifiers import ifeval, math  # noqa: F401  (registers gsm8k, math, ifeval)
from divtrace.tasks.verifiers.base import Verdict, Verifier, create_verifier, register_verifier, verifier_names

__all__ = ["Verdict", "Verifier", "create_verifier", "register_verifier", "verifier_names"]
