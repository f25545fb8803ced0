"""The lineage lab: post-train a base model into a lineage (SFT, DPO; LoRA or full fine-tuning) from a recipe, and
write the study that ``divtrace run`` takes to trace it."""
