"""The verify stage: a verdict per sample and pass@k / majority vote per cell.

``base`` (the Verifier contract and its registry), one module per verifier family (``math``, ``code`` in the
sandbox, ``ifeval``, ``truthfulqa``), ``aggregate`` (majority vote, accuracy and pass@k per cell) and ``pipeline``
(verify stored samples). The built-in verifiers are declared in :data:`divtrace.plugins.BUILTIN_PLUGINS` and their
modules imported when first used.
"""

from divtrace.verify.base import (
    MajorityRule,
    Verdict,
    Verifier,
    create_verifier,
    majority_rule,
    register_verifier,
    verifier_class,
    verifier_names,
)

__all__ = [
    "MajorityRule",
    "Verdict",
    "Verifier",
    "create_verifier",
    "majority_rule",
    "register_verifier",
    "verifier_class",
    "verifier_names",
]
