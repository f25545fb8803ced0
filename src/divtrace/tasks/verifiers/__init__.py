"""Verifiers for the verifiable tasks; importing this package registers the built-in ones."""

from divtrace.tasks.verifiers.base import Verdict, Verifier, create_verifier, register_verifier, verifier_names

__all__ = ["Verdict", "Verifier", "create_verifier", "register_verifier", "verifier_names"]
