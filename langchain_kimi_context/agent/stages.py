"""The agent's compaction and guard steps, for the faces that run them outside the graph.

``RollingSnapshotMemory`` and ``KimiContextMiddleware`` apply stored compaction records,
run a compaction and resolve a model's profile exactly as the agent's nodes do; they
import these steps from here (the implementation lives in the agent package).
"""

from langchain_kimi_context.agent._stages import (
    apply_records,
    compaction_due,
    guard,
    load_records,
    model_profile,
    run_compaction,
    stage_report,
)

__all__ = [
    "apply_records",
    "compaction_due",
    "guard",
    "load_records",
    "model_profile",
    "run_compaction",
    "stage_report",
]
