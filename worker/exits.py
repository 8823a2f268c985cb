"""Why a run stopped early, and the exit code each reason gives (CONTRACT section 6).

Declared from the most serious reason to the mildest: when two meet, the more
serious wins, so a 401 during a graceful stop still exits 3.
"""

from __future__ import annotations

from enum import Enum


class StopReason(Enum):
    """Why a run stopped early; declared from the most serious to the mildest."""

    OUTPUT_FAILED = (
        "output_failed",
        7,
        "an output file could not be written (disk full, I/O error, quota): "
        "make room or fix the disk, then run the same command",
    )
    AUTH_FAILED = (
        "auth_failed",
        3,
        "the key was rejected (401): set a valid key and run the same command; "
        "finished jobs are kept",
    )
    PAYMENT_REQUIRED = (
        "payment_required",
        4,
        "top up the balance, then run the same command",
    )
    SYSTEMATIC_FAILURE = (
        "systematic_failure",
        6,
        "every recent job failed the same way: fix the cause (base URL, model, "
        "plan), then rerun with --retry-failed",
    )
    RATE_LIMIT_BUDGET = (
        "rate_limit_budget",
        5,
        "the API asked for a longer pause than --max-retry-after (quota spent for "
        "now): run the same command later",
    )
    DAILY_CAP = (
        "daily_cap",
        5,
        "Mira's daily message cap was reached; it resets at 00:00 UTC: run the "
        "same command after that, or with --until-done to wait for it",
    )
    DAILY_RESERVE = (
        "daily_reserve",
        5,
        "only the --daily-reserve of the day's messages is left, for the people "
        "on the account; Mira's day resets at 00:00 UTC: run the same command "
        "after that, or with --until-done to wait for it",
    )
    MONTHLY_BUDGET = (
        "monthly_budget",
        5,
        "Mira's monthly token budget is spent: run the same command when the "
        "plan renews or after raising it",
    )
    DEADLINE = ("deadline", 5, "the --deadline was reached: rerun to continue")
    COST_BUDGET = (
        "cost_budget",
        5,
        "the --max-cost was reached: rerun with a higher cap to continue",
    )
    TOKEN_BUDGET = (
        "token_budget",
        5,
        "the --token-budget was reached: rerun (with a new budget) to continue",
    )
    SIGINT = (
        "interrupted",
        130,
        "stopped by a signal: run the same command to continue",
    )
    SIGTERM = (
        "interrupted",
        143,
        "stopped by a signal: run the same command to continue",
    )
    SIGHUP = (
        "interrupted",
        129,
        "stopped by a hang-up (the terminal or SSH session closed): run the same "
        "command to continue, under nohup, tmux or a scheduler to outlive it",
    )

    def __init__(self, label: str, exit_code: int, next_step: str) -> None:
        self.label = label
        self.exit_code = exit_code
        self.next_step = next_step

    @property
    def severity(self) -> int:
        """Higher is more serious; the budgets share one level, as do the signals."""
        return _SEVERITY[self.label]

    @property
    def fatal(self) -> bool:
        """True when requests in flight are cancelled at once."""
        return self.severity >= _SEVERITY["payment_required"]


_SEVERITY = {
    "output_failed": 6,
    "auth_failed": 5,
    "payment_required": 4,
    "systematic_failure": 3,
    "rate_limit_budget": 2,
    "daily_cap": 2,
    "daily_reserve": 2,
    "monthly_budget": 2,
    "deadline": 2,
    "token_budget": 2,
    "cost_budget": 2,
    "interrupted": 1,
}


def exit_code_for(reason: StopReason | None, *, any_failed: bool) -> int:
    """The process exit code for how the run ended."""
    if reason is not None:
        return reason.exit_code
    return 1 if any_failed else 0
