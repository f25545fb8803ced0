"""Build the shipped tiny lineage again from its packaged recipe and compare the adapters with the shipped ones.

divtrace ships the adapters of ``src/divtrace/lab/recipes/tiny_lineage.yaml`` (gemma-3-270m base -> SFT -> DPO) as
package data under ``src/divtrace/lab/shipped/tiny-lineage/STAGE/`` (``quickstart:gemma-3-270m-sft`` and
``quickstart:gemma-3-270m-dpo``). This script runs ``divtrace lab build RECIPE --out DIR`` (the teacher's and the
parent's samples, the training rows and both stages, everything offline) and then compares, stage by stage, the
rebuilt ``adapter_model.safetensors`` with the shipped one tensor by tensor. It prints, per adapter, the largest
absolute difference over all tensors, whether the weight files are byte-identical and whether the adapter configs
say the same (``target_modules`` compared as a set: peft writes them from a set, in an order that follows the
process's hash seed).

Exit status: 0 when every adapter has the shipped tensors (same names and shapes) within ``--tolerance`` (default
:data:`TOLERANCE`) and the same config; 1 otherwise; 2 when the build fails. Training is deterministic on one device
for one set of library versions; another CPU, another torch or another device trains close but not bitwise equal
weights, which is what the tolerance is for (the README's lab section gives what was measured).

Usage (from the repository root, with divtrace and its lab extra installed; about 10 minutes on 2 CPU cores)::

    python scripts/rebuild_tiny_lineage.py --out /tmp/tiny-lineage
    python scripts/rebuild_tiny_lineage.py --out /tmp/tiny-lineage --no-build   # compare a build already there
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

#: The largest absolute difference of any adapter weight accepted as "the same build".
TOLERANCE = 1e-5
#: The stages of the shipped lineage, and where the shipped adapters and the recipe lie inside divtrace.
STAGES = ("sft", "dpo")
LINEAGE = "tiny-lineage"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def recipe_file() -> Path:
    """The packaged recipe the shipped lineage was built from."""
    return Path(str(files("divtrace.lab").joinpath("recipes", "tiny_lineage.yaml")))


def shipped_dir(stage: str) -> Path:
    """The shipped adapter directory of ``stage``."""
    return Path(str(files("divtrace.lab").joinpath("shipped", LINEAGE, stage)))


@dataclass(frozen=True)
class Comparison:
    """One stage's rebuilt adapter against the shipped one."""

    stage: str
    max_abs_diff: float
    tensors: int
    same_names: bool
    byte_identical: bool
    same_config: bool

    def within(self, tolerance: float) -> bool:
        """Whether the rebuilt adapter counts as the shipped one: same tensors and config, weights within
        ``tolerance``."""
        return self.same_names and self.same_config and self.max_abs_diff <= tolerance


def _config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    config["target_modules"] = sorted(config.get("target_modules") or [])
    return config


def compare(stage: str, rebuilt: Path, shipped: Path) -> Comparison:
    """Compare the adapter directory ``rebuilt`` with ``shipped``: the largest absolute difference over every tensor
    both hold (infinite when the names or shapes differ), and whether files and configs are the same."""
    from safetensors.torch import load_file

    ours, theirs = load_file(str(rebuilt / WEIGHTS)), load_file(str(shipped / WEIGHTS))
    same_names = sorted(ours) == sorted(theirs) and all(ours[n].shape == theirs[n].shape for n in ours)
    if same_names:
        worst = max((float((ours[n].double() - theirs[n].double()).abs().max()) for n in ours), default=0.0)
    else:
        worst = float("inf")
    identical = (rebuilt / WEIGHTS).read_bytes() == (shipped / WEIGHTS).read_bytes()
    return Comparison(stage, worst, len(ours), same_names, identical, _config(rebuilt) == _config(shipped))


def build(out: Path) -> float:
    """Run ``divtrace lab build`` on the packaged recipe into ``out``; its wall seconds (SystemExit(2) on failure)."""
    command = [sys.executable, "-m", "divtrace.cli", "lab", "build", str(recipe_file()), "--out", str(out)]
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"the build failed (exit {done.returncode})", file=sys.stderr)
        raise SystemExit(2)
    print(f"built in {seconds:.0f} s wall", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Build (unless ``--no-build``), compare every stage, print one line per adapter; the exit status above."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the lab directory to build into (kept)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help=f"default {TOLERANCE:g}")
    parser.add_argument("--no-build", action="store_true", help="compare what --out holds, without building")
    args = parser.parse_args(argv)
    if not args.no_build:
        build(args.out)
    ok = True
    for stage in STAGES:
        result = compare(stage, args.out / "checkpoints" / stage, shipped_dir(stage))
        ok = ok and result.within(args.tolerance)
        print(
            f"{stage}: max abs difference {result.max_abs_diff:.3g} over {result.tensors} tensors "
            f"(tolerance {args.tolerance:g}); weights byte-identical: {'yes' if result.byte_identical else 'no'}; "
            f"config the same: {'yes' if result.same_config else 'no'}; "
            f"{'OK' if result.within(args.tolerance) else 'DIFFERS'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
