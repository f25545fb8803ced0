"""Verifiers for the verifiable tasks; importing this package registers the built-in ones."""

# Imported for their registrations: gsm8k, math (math); ifeval (ifeval); humaneval, mbpp, cruxeval (code);
# truthfulqa (truthfulqa).
from divtrace.tasks.verifiers import code, ifeval, math, truthfulqa  # noqa: F401
from divtrace.tasks.verifiers.base import (
    MajorityRule,
    Verdict,
    Verifier,
    create_verifier,
    majority_rule,
    register_verifier,
    verifier_names,
)

__all__ = [
    "MajorityRule",
    "Verdict",
    "Verifier",
    "create_verifier",
    "majority_rule",
    "register_verifier",
    "verifier_names",
]
