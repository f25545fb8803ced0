"""The verify stage: a verdict per sample and pass@k / majority vote per cell.

``base`` (the Verifier contract and its registry), one module per verifier family (``math``, ``code`` in the
sandbox, ``ifeval``, ``truthfulqa``), ``aggregate`` (majority vote, accuracy and pass@k per cell) and ``pipeline``
(verify stored samples). Importing this package registers the built-in verifiers.
"""

# Imported for their registrations: gsm8k, math (math); ifeval (ifeval); humaneval, mbpp, cruxeval (code);
# truthfulqa (truthfulqa).
from divtrace.verify import code, ifeval, math, truthfulqa  # noqa: F401
from divtrace.verify.base import (
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
