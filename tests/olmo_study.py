"""A study of the published Olmo 3 Instruct lineage (base -> SFT -> DPO on gsm8k and writingprompts), as the text a
user writes: the tests of study parsing, planning and sweeps that need hub models and the study's own tasks (nothing
here is downloaded; the tests only parse and plan it). ``divtrace init``'s starter study runs the shipped lineage
offline instead and names this one as a commented alternative."""

OLMO_INSTRUCT_STUDY = """\
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
