"""``divtrace lab``: the lineage lab. ``divtrace lab build RECIPE --out DIR`` post-trains a base model into the
lineage a recipe describes (SFT, DPO; LoRA or full fine-tuning) and writes the study that ``divtrace run`` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from divtrace.cli import checks
from divtrace.cli.app import DivtraceCommand, command_group
from divtrace.cli.console import note, say
from divtrace.cli.options import WaitOption
from divtrace.cli.progress import progress_display

lab_app = command_group(
    "lab", "The lineage lab: post-train a base model into a lineage from a recipe, to trace it with divtrace run."
)


@lab_app.command("build", cls=DivtraceCommand)
def build_command(
    recipe: Annotated[Path, typer.Argument(help="the recipe: a YAML file (name, base, stages, study)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the lab directory: checkpoints, cards and study.yaml")],
    wait: WaitOption = False,
) -> None:
    """Build RECIPE's stages into OUT (each stage not already built, parents first) and write OUT/study.yaml."""
    from divtrace.lab.build import StageOutcome, build_lab
    from divtrace.lab.recipe import load_recipe
    from divtrace.lab.train import require_lab_libraries
    from divtrace.progress import format_duration
    from divtrace.runs.lock import hold_run_directory

    chosen = load_recipe(recipe)
    require_lab_libraries()
    checks.writable_directory(out, "--out")

    with hold_run_directory(out, "divtrace lab build", wait=wait, say=note), progress_display() as display:

        def tell(outcome: StageOutcome) -> None:
            took = format_duration(outcome.seconds)
            if outcome.status == "skipped":
                line = f"{outcome.name}: skipped (built and unchanged) in {took}"
            else:
                line = f"{outcome.name}: built in {took} ({outcome.reason}) -> {outcome.checkpoint}"
            display.console.print(line, markup=False, highlight=False, soft_wrap=True)

        built = build_lab(chosen, recipe, out, progress=display, on_stage=tell)
    skipped = sum(outcome.status == "skipped" for outcome in built.stages)
    say(f"{len(built.stages) - skipped} stage(s) built, {skipped} skipped; the study: {built.study_file}")
    if not built.study_validated:
        note(
            "study.yaml names LoRA adapters ('adapter'), which this divtrace's studies do not take yet: divtrace run "
            "refuses it until they do"
        )
    say(f"trace it: divtrace run {built.study_file} --out RUN_DIR")
