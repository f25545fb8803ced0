"""The built-in studies: ``quickstart`` (the lineage divtrace ships: gemma-3-270m base -> SFT -> DPO, small enough
for a laptop CPU) and ``olmo3-7b`` (the 13 Olmo 3 7B checkpoints of the published study, plus the Think checkpoints
again with thinking suppressed)."""

from __future__ import annotations

from collections.abc import Sequence

from divtrace.score.settings import NLISettings
from divtrace.study.spec import CheckpointSpec, ExecutorSpec, SamplingSpec, Study, TaskSpec

#: The quickstart's lineage: the shipped tiny lineage of ``divtrace/lab/recipes/tiny_lineage.yaml`` (gemma-3-270m
#: base, its SFT adapter, the DPO adapter trained from that SFT), as checkpoint name -> (parent, adapter); each
#: checkpoint's stage is its name.
QUICKSTART_LINEAGE: dict[str, tuple[str | None, str | None]] = {
    "base": (None, None),
    "sft": ("base", "quickstart:gemma-3-270m-sft"),
    "dpo": ("sft", "quickstart:gemma-3-270m-dpo"),
}


def quickstart_checkpoints(names: Sequence[str] | None = None) -> list[CheckpointSpec]:
    """The quickstart's checkpoints (all three of :data:`QUICKSTART_LINEAGE`, or those of ``names`` in lineage
    order): each is ``quickstart:gemma-3-270m``, the SFT and DPO stages with their shipped LoRA adapters. A name
    outside the lineage, or a stage kept without its parent, raises ValueError."""
    chosen = list(QUICKSTART_LINEAGE) if names is None else [n for n in QUICKSTART_LINEAGE if n in names]
    unknown = sorted(set(names or ()) - set(QUICKSTART_LINEAGE))
    orphans = [n for n in chosen if (parent := QUICKSTART_LINEAGE[n][0]) is not None and parent not in chosen]
    if unknown or orphans or not chosen:
        known = list(QUICKSTART_LINEAGE)
        raise ValueError(f"quickstart checkpoints {names}: choose from {known}, each with its parent")
    return [
        CheckpointSpec(name=name, model="quickstart:gemma-3-270m", adapter=adapter, stage=name, parent=parent)
        for name in chosen
        for parent, adapter in [QUICKSTART_LINEAGE[name]]
    ]


def quickstart_study() -> Study:
    """The built-in offline study: the shipped tiny lineage (gemma-3-270m base -> SFT -> DPO, one model's weights
    and two LoRA adapters divtrace ships), two bundled tasks, K = 8, 48 tokens."""
    from divtrace.tasks.bundled import QUICKSTART_TASK_FILES

    return Study(
        name="quickstart",
        description="gemma-3-270m base -> SFT -> DPO, the lineage divtrace ships (LoRA adapters built by "
        "divtrace lab from its recipe tiny_lineage.yaml); offline, under 3 minutes on 2 CPU cores.",
        checkpoints=quickstart_checkpoints(),
        tasks=[TaskSpec(name=str(path)) for path in QUICKSTART_TASK_FILES],
        sampling=SamplingSpec(k=8, temperature=0.8, top_p=0.95, max_new_tokens=48, seed=1234),
        metrics=["ead", "sbert", "vendi"],
        shard_size=8,
    )


def small_quickstart_study(
    prompts: int,
    k: int,
    max_new_tokens: int,
    *,
    shard_size: int = 1,
    seed: int = 1234,
    name: str = "small-quickstart",
    checkpoints: Sequence[str] = ("base", "sft"),
) -> Study:
    """The quickstart cut down to ``prompts`` prompts per task, K = ``k``, ``max_new_tokens`` tokens, and to the
    lineage's ``checkpoints`` (default: base -> sft, the one edge; all three: ``("base", "sft", "dpo")``;
    :func:`quickstart_checkpoints`): tests and benchmarks that need the real end-to-end path in seconds."""
    study = quickstart_study()
    return study.model_copy(
        update={
            "name": name,
            "checkpoints": quickstart_checkpoints(checkpoints),
            "tasks": [TaskSpec(name=task.name, n=prompts) for task in study.tasks],
            "sampling": SamplingSpec(k=k, temperature=0.8, top_p=0.95, max_new_tokens=max_new_tokens, seed=seed),
            "shard_size": shard_size,
        }
    )


OLMO3_7B_TASKS = (
    "tldr", "cnn_dailymail", "xsum", "humaneval", "mbpp", "cruxeval", "gsm8k", "math_algebra", "math_geometry",
    "truthfulqa", "alpaca", "ifeval", "writingprompts", "prism", "wildbench",
)  # fmt: skip


#: The study's four text metrics, its code diversity (on the correct programs of code tasks) and answer-level
#: diversity (on verifiable tasks).
OLMO3_7B_METRICS = (
    "ead", "sbert", "vendi", "nli", "ast", "ast-distinct", "code-sbert", "code-vendi", "answer-distinct",
    "answer-entropy",
)  # fmt: skip


def olmo3_7b_study() -> Study:
    """The study's 13 Olmo 3 7B checkpoints (vLLM), plus the Think checkpoints with thinking suppressed."""
    vllm = {"backend": "vllm"}
    checkpoints = [
        CheckpointSpec(name="base", model="allenai/Olmo-3-1025-7B", stage="base", chat_template=False, **vllm),
        CheckpointSpec(name="think-sft", model="allenai/Olmo-3-7B-Think-SFT", stage="sft", parent="base", **vllm),
        CheckpointSpec(name="think-dpo", model="allenai/Olmo-3-7B-Think-DPO", stage="dpo", parent="think-sft", **vllm),
        CheckpointSpec(name="think", model="allenai/Olmo-3-7B-Think", stage="rl", parent="think-dpo", **vllm),
        CheckpointSpec(name="instruct-sft", model="allenai/Olmo-3-7B-Instruct-SFT", stage="sft", parent="base", **vllm),
        CheckpointSpec(
            name="instruct-dpo", model="allenai/Olmo-3-7B-Instruct-DPO", stage="dpo", parent="instruct-sft", **vllm
        ),
        CheckpointSpec(name="instruct", model="allenai/Olmo-3-7B-Instruct", stage="rl", parent="instruct-dpo", **vllm),
    ]
    rl_zero = [("", "3", domain) for domain in ("Math", "Code", "IF", "General")]
    rl_zero += [("3.1-", "3.1", domain) for domain in ("Math", "Code")]
    for label, version, domain in rl_zero:
        checkpoints.append(
            CheckpointSpec(
                name=f"rl-zero-{label}{domain.lower()}",
                model=f"allenai/Olmo-{version}-7B-RL-Zero-{domain}",
                stage="rl-zero",
                parent="base",
                **vllm,
            )
        )
    for think in ("think-sft", "think-dpo", "think"):
        original = next(c for c in checkpoints if c.name == think)
        checkpoints.append(
            CheckpointSpec(
                name=f"{think}-nothink",
                model=original.model,
                stage=original.stage,
                variant_of=think,
                thinking="suppressed",
                **vllm,
            )
        )
    return Study(
        name="olmo3-7b",
        description="Karouzos, Tan, Aletras (2026): where does output diversity collapse in post-training? "
        "13 Olmo 3 7B checkpoints, 15 tasks, K=16, temperature 0.6, top-p 0.95.",
        checkpoints=checkpoints,
        tasks=[TaskSpec(name=name) for name in OLMO3_7B_TASKS],
        sampling=SamplingSpec(),
        metrics=list(OLMO3_7B_METRICS),
        embedder="sentence-transformers/all-mpnet-base-v2",
        code_embedder="microsoft/unixcoder-base",
        # The study's code scores every across-input NLI pair (divtrace's default samples 2,000).
        nli_model=NLISettings(model="roberta-large-mnli", pairs_across="all"),
        executor=ExecutorSpec(type="ray"),
    )


PRESETS = {"quickstart": quickstart_study, "olmo3-7b": olmo3_7b_study}


STARTER_STUDY = """\
# A divtrace study: one lineage of checkpoints, the tasks to sample, and how.
# Run it with: divtrace run study.yaml --out runs/my-study   (add --dry-run to see the plan first)
# As written it runs offline on the lineage divtrace ships (gemma-3-270m base -> SFT -> DPO, LoRA adapters built by
# `divtrace lab build` from the recipe tiny_lineage.yaml): a few minutes on a laptop CPU.
name: my-study
# caveat: shown at the top of the report, e.g. when the checkpoints are not one lineage.

checkpoints:                # the lineage as a graph: each checkpoint names the one it was trained from
  - name: base
    model: quickstart:gemma-3-270m         # hub id, local dir, .gguf file, or quickstart:NAME
    stage: base
  - name: sft
    model: quickstart:gemma-3-270m
    adapter: quickstart:gemma-3-270m-sft   # a LoRA adapter on the model: PEFT dir or quickstart:NAME
    stage: sft
    parent: base
  - name: dpo
    model: quickstart:gemma-3-270m
    adapter: quickstart:gemma-3-270m-dpo
    stage: dpo
    parent: sft

# The published study's Instruct lineage instead (hub models; a GPU and backend: vllm advised):
#   - name: base
#     model: allenai/Olmo-3-1025-7B
#     stage: base
#     chat_template: false                 # base models get the raw prompt
#   - name: sft
#     model: allenai/Olmo-3-7B-Instruct-SFT
#     revision: main                       # pin a revision for reproducibility
#     stage: sft
#     parent: base
#   - name: dpo
#     model: allenai/Olmo-3-7B-Instruct-DPO
#     stage: dpo
#     parent: sft
#   - name: think-nothink                  # same weights, thinking suppressed (chain-of-thought ablation)
#     model: allenai/Olmo-3-7B-Think
#     variant_of: think
#     thinking: suppressed
#   backend: transformers | vllm | openai  (per checkpoint; options: {dtype: bfloat16, base_url: ...})

tasks:                      # divtrace tasks lists them; a task .yaml file works too
  - name: arithmetic        # bundled, verifiable (pass@1 and the quality-control decomposition)
  - name: open_ended        # bundled, open-ended
  # - name: gsm8k           # the study's tasks (data from the hub, or data_dir: below)
  #   n: 100                # default: the study's N for the task
  # - name: writingprompts

sampling:                   # the study's defaults are k 16, temperature 0.6, top_p 0.95
  k: 8
  temperature: 0.8
  top_p: 0.95
  seed: 1234
  max_new_tokens: 48        # default: each task's own (the study's caps; 512 for gsm8k)

metrics: [ead, sbert, vendi]          # add nli with nli_model: roberta-large-mnli
# embedder: sentence-transformers/all-mpnet-base-v2   # the study's; default: packaged all-MiniLM-L6-v2
# data_dir: data/                     # offline task data: TASK.jsonl files
executor:
  type: local                         # or ray (address: auto)
"""
