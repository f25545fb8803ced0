"""Study runs: the run directory layout, the plan, and the stages (generate, verify, score, analyze, report)."""
