"""The built-in studies: ``quickstart`` (the packaged models, small enough for a laptop CPU) and ``olmo3-7b`` (the 13
Olmo 3 7B checkpoints of the published study, plus the Think checkpoints again with thinking suppressed)."""

from __future__ import annotations

from divtrace.score.settings import NLISettings
from divtrace.study.spec import CheckpointSpec, ExecutorSpec, SamplingSpec, Study, TaskSpec

QUICKSTART_CAVEAT = (
    "The two quickstart models come from different families (google/gemma-3-270m, a base model, and "
    "HuggingFaceTB/SmolLM2-135M-Instruct): this report compares across families, it is NOT a lineage. "
    "It demonstrates the pipeline; draw no conclusion about post-training from it."
)


def quickstart_study() -> Study:
    """The built-in offline demo: two packaged models, two bundled tasks, small K, short outputs."""
    from divtrace.tasks.bundled import QUICKSTART_TASK_FILES

    return Study(
        name="quickstart",
        description="Offline demo on the packaged models (2 CPU cores, a few minutes).",
        caveat=QUICKSTART_CAVEAT,
        checkpoints=[
            CheckpointSpec(name="gemma-3-270m", model="quickstart:gemma-3-270m", stage="base"),
            CheckpointSpec(
                name="smollm2-135m-instruct",
                model="quickstart:smollm2-135m-instruct",
                stage="instruct (other family)",
                parent="gemma-3-270m",
            ),
        ],
        tasks=[TaskSpec(name=str(path)) for path in QUICKSTART_TASK_FILES],
        sampling=SamplingSpec(k=8, temperature=0.8, top_p=0.95, max_new_tokens=48, seed=1234),
        metrics=["ead", "sbert", "vendi"],
        shard_size=8,
    )


def small_quickstart_study(
    prompts: int, k: int, max_new_tokens: int, *, shard_size: int = 1, seed: int = 1234, name: str = "small-quickstart"
) -> Study:
    """The quickstart cut down to ``prompts`` prompts per task, K = ``k``, ``max_new_tokens`` tokens (tests and
    benchmarks that need the real end-to-end path in seconds)."""
    study = quickstart_study()
    return study.model_copy(
        update={
            "name": name,
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
name: my-study
# caveat: shown at the top of the report, e.g. when the checkpoints are not one lineage.

checkpoints:                # the lineage as a graph: each checkpoint names the one it was trained from
  - name: base
    model: allenai/Olmo-3-1025-7B          # hub id, local dir, .gguf file, or quickstart:NAME
    stage: base
    chat_template: false                   # base models get the raw prompt
  - name: sft
    model: allenai/Olmo-3-7B-Instruct-SFT
    # revision: main                       # pin a revision for reproducibility
    stage: sft
    parent: base
  - name: dpo
    model: allenai/Olmo-3-7B-Instruct-DPO
    stage: dpo
    parent: sft
  # - name: think-nothink                  # same weights, thinking suppressed (chain-of-thought ablation)
  #   model: allenai/Olmo-3-7B-Think
  #   variant_of: think
  #   thinking: suppressed
  # backend: transformers | vllm | openai  (per checkpoint; options: {dtype: bfloat16, base_url: ...})

tasks:                      # divtrace tasks lists them; a task .yaml file works too
  - name: gsm8k
    n: 100                  # default: the study's N for the task
  - name: writingprompts
    n: 100

sampling:                   # the study's defaults
  k: 16
  temperature: 0.6
  top_p: 0.95
  seed: 1234
  # max_new_tokens: 512     # default: each task's own

metrics: [ead, sbert, vendi]          # add nli with nli_model: roberta-large-mnli
# embedder: sentence-transformers/all-mpnet-base-v2   # the study's; default: packaged all-MiniLM-L6-v2
# data_dir: data/                     # offline task data: TASK.jsonl files
executor:
  type: local                         # or ray (address: auto)
"""
