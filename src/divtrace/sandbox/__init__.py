"""Run model-written code, treated as hostile input, in a throwaway sandbox (docs/sandbox.md).

Two programs: ``supervisor`` runs inside the sandbox with ``python -I -S`` and may import the standard library only
(tests/sandbox/test_layout.py enforces it); ``host`` is the API divtrace calls, ``worker`` the long-lived sandboxes
it runs programs on, ``limits`` the shared vocabulary (limits, results, plans).
"""

from divtrace.sandbox.host import SandboxCapabilities, run_many, run_python, sandbox_capabilities
from divtrace.sandbox.limits import Isolation, SandboxError, SandboxLimits, SandboxResult, Status

__all__ = [
    "Isolation",
    "SandboxCapabilities",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "Status",
    "run_many",
    "run_python",
    "sandbox_capabilities",
]
