"""Float32 linear layers through oneDNN on a CPU.

torch's CPU wheels compute a float32 ``nn.Linear`` with MKL's GEMM, which ran at less than half oneDNN's speed on the
development machine, an AMD EPYC with AVX-512 (the 640 x 262,144 output layer of gemma-3-270m for 64 rows: 358 ms
with MKL, 165 ms with oneDNN, both float32, 2 threads; other CPUs were not measured). oneDNN ships inside
torch (``torch.backends.mkldnn``), but no torch or transformers setting routes a float32 ``nn.Linear`` to it (the
``torch.utils.mkldnn`` converter builds TorchScript modules), so this module swaps the layers by hand.

A row's result does not depend on how many rows share its batch (2 rows or 64; tested in
``tests/generate/test_onednn_linear.py``), except in oneDNN's one-row path, which rounds otherwise: a one-row input
is computed as two copies of the row. (Neither torch's default linear layers nor its attention kernels promise that
much: a batch of 8 and a row alone can differ in the last bits there, so a sample can, rarely, differ with the
rows it shares a batch with, whichever linear layers compute it.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: What the sampling record names when the linear layers ran through this module.
ONEDNN_LINEAR = "onednn"


def onednn_available() -> bool:
    """True when torch was built with oneDNN and the CPU can run it."""
    import torch

    return bool(torch.backends.mkldnn.is_available())


def linear_setting(onednn: bool, device: str, dtype: str) -> str | None:
    """What the sampling record names as ``linear`` for a model loaded with these settings: :data:`ONEDNN_LINEAR`
    when ``onednn`` is asked for, on the CPU in float32, with oneDNN available; else None (torch's default)."""
    return ONEDNN_LINEAR if onednn and device == "cpu" and dtype == "float32" and onednn_available() else None


def _module_class() -> Any:
    import torch

    class OneDNNLinear(torch.nn.Module):  # type: ignore[misc]
        """``nn.Linear`` (float32, CPU, inference only) computed by oneDNN; the weight is held in oneDNN's layout."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            self.register_buffer("weight", linear.weight.detach().to_mkldnn())
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = x.reshape(-1, x.shape[-1])
            single = rows.shape[0] == 1
            if single:  # oneDNN's one-row path rounds otherwise than its GEMM: compute two copies
                rows = rows.expand(2, -1)
            out = torch.ops.aten.mkldnn_linear(rows.contiguous().to_mkldnn(), self.weight, self.bias).to_dense()
            return out[:1].reshape(*x.shape[:-1], -1) if single else out.reshape(*x.shape[:-1], -1)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    return OneDNNLinear


def to_onednn_linear(model: torch.nn.Module) -> int:
    """Replace every float32 ``nn.Linear`` of ``model`` (on the CPU, for inference) by its oneDNN version, in place;
    tied weights are copied (the output layer stops sharing its weight with the embedding). Returns how many layers
    were replaced (0 when oneDNN is not available)."""
    import torch

    if not onednn_available():
        return 0
    replacement = _module_class()
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float32 and not module.weight.is_cuda
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, replacement(module))
    return len(targets)
