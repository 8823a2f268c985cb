"""The odds the learner weighs before it probes past a cap, and each shard's
part of Mira's documented in-flight cap (domain/refusal.py holds Mira's limits)."""

from __future__ import annotations

import math

from worker.domain.refusal import MIRA_IN_FLIGHT

# Answers quicker than this come from no language model: the documented cap,
# which is Mira's, is then no evidence about the server.
MODEL_LATENCY_S = 0.05
# Odds that a probe fails: just above Mira's documented cap, above a level
# that already went through beyond it, and above a cap learned from a 429.
ODDS_AT_DOCUMENTED_CAP = 4.0
ODDS_BEYOND_IT = 0.25
ODDS_ABOVE_LEARNED_CAP = 9.0
PROBE_BACKOFF_S = 30.0  # no probe so long after a cut that was no probe


def shard_share(index: int, count: int) -> tuple[int, float]:
    """This shard's part of the documented cap, and from what fraction of its own
    jobs a shard with a smaller part may expect the others to be done."""
    share = max(1, MIRA_IN_FLIGHT // count + (index < MIRA_IN_FLIGHT % count))
    largest = max(1, MIRA_IN_FLIGHT // count + (MIRA_IN_FLIGHT % count > 0))
    # Equal job counts: a shard with half the share is half done when the
    # others finish; a tenth more is margin for the spread between shards.
    takeover = min(1.0, share / largest + 0.1) if share < largest else math.inf
    return share, takeover
