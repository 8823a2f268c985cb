"""The one writer of the run's counts: the reader and the workers report what
happened, and only this turns it into RunStats."""

from __future__ import annotations

import logging
from typing import NamedTuple

from worker.domain.prices import PriceBook
from worker.domain.usage import read_usage
from worker.report.stats import RunStats

log = logging.getLogger("worker.run")


class Charge(NamedTuple):
    """What one answer counts for: its tokens, and its cost in kopecks at the
    run's prices (0 when its model has no price); not `final` while the prices
    Mira charges are still being read (the cost is then set when they are)."""

    tokens: int
    kopecks: float
    final: bool = True


NOTHING = Charge(0, 0.0)


class Tally:
    """Events of one run, counted into `stats` (which everyone else only reads)."""

    __slots__ = ("_provisional", "prices", "stats")

    def __init__(
        self, stats: RunStats | None = None, prices: PriceBook | None = None
    ) -> None:
        self.stats = stats if stats is not None else RunStats()
        self.prices = prices if prices is not None else PriceBook()
        # Answers priced before Mira's prices were read: (model, in, out,
        # kopecks or None for no price); None once the prices are settled.
        self._provisional: list[tuple[str, int, int, float | None]] | None = None

    # -- the prices ------------------------------------------------------------

    def prices_pending(self) -> None:
        """Mira's prices are being read: answers until then are priced again."""
        self._provisional = []

    def priced(self, book: PriceBook | None) -> None:
        """Mira's prices were read (`book`), or will not be (None: the prices
        so far stand); the answers before are priced again at them."""
        provisional, self._provisional = self._provisional, None
        if book is None or provisional is None:
            return
        self.prices = book
        stats = self.stats
        for model, prompt, completion, old in provisional:
            if old is not None:
                self._add(model, -old)
            if (new := book.kopecks(model, prompt, completion)) is not None:
                self._add(model, new)
            elif old is not None and not stats.kopecks_by_model.get(model):
                del stats.kopecks_by_model[model]  # no price after all

    # -- before the run, and the reader --------------------------------------

    def resumed(self, *, succeeded: int, failed: int) -> None:
        """What earlier runs finished, as resume found it."""
        self.stats.succeeded_before, self.stats.failed_before = succeeded, failed

    def expect(self, jobs: int) -> None:
        """About this many jobs are coming (for the ETA, before the input is read)."""
        self.stats.expected_jobs = jobs

    def read(self) -> None:
        """A line of this shard was read."""
        self.stats.total += 1

    def skipped(self) -> None:
        """A line already has an outcome from an earlier run."""
        self.stats.skipped += 1

    def invalid(self) -> None:
        """A line is not a valid job: it fails without a request."""
        self.stats.failed += 1
        self.stats.invalid += 1

    def carries_system(self) -> None:
        """A job to send carries system messages (which Mira drops)."""
        self.stats.jobs_with_system += 1

    def input_read(self) -> None:
        """The whole input was read."""
        self.stats.input_complete = True

    # -- the workers ----------------------------------------------------------

    def sent(self) -> None:
        """A request went out."""
        self.stats.requests_sent += 1
        self.stats.in_flight += 1

    def refused(
        self, status: int | None, *, body: object = None, model: str = ""
    ) -> Charge:
        """A request ended without an answer (`status` when the server sent one);
        return what it is billed.

        A 200 that is no answer (Mira's upstream-error text, a moderated or an
        empty one) is still billed by its usage: its tokens and cost count.
        """
        self.stats.in_flight -= 1
        if status is None:
            return NOTHING
        self.stats.statuses[status] += 1
        if 200 <= status < 300 and isinstance(body, dict):
            return self.used(body.get("usage"), model)
        return NOTHING

    def answered(
        self, status: int, latency_s: float, usage: object, model: str
    ) -> Charge:
        """A request was answered; return what it counts for."""
        stats = self.stats
        stats.in_flight -= 1
        stats.statuses[status] += 1
        stats.latency.add(latency_s)
        return self.used(usage, model)

    def used(self, usage: object, model: str = "") -> Charge:
        """Tokens an answer reports (untrusted); return its total as counted,
        and its cost."""
        stats = self.stats
        prompt, completion, total, suspect = read_usage(usage)
        if suspect is not None and not stats.untrusted_usage_seen:
            stats.untrusted_usage_seen = True
            log.warning(
                "the server reported usage %r, which is not a token count; "
                "it counts as 0 for budgets and pacing",
                suspect,
            )
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        stats.total_tokens += total
        if not model:
            return Charge(total, 0.0)
        tokens = stats.tokens_by_model.setdefault(model, [0, 0])
        tokens[0] += prompt
        tokens[1] += completion
        # Priced answer by answer: Mira floors each charge to whole kopecks.
        kopecks = self.prices.kopecks(model, prompt, completion)
        if kopecks is not None:
            self._add(model, kopecks)
        if (provisional := self._provisional) is not None:
            provisional.append((model, prompt, completion, kopecks))
            return Charge(total, kopecks or 0.0, final=False)
        return Charge(total, kopecks or 0.0)

    def _add(self, model: str, kopecks: float) -> None:
        stats = self.stats
        stats.kopecks_by_model[model] = stats.kopecks_by_model.get(model, 0.0) + kopecks
        stats.kopecks += kopecks

    def refusal(self, kind: str) -> None:
        """A request was refused (429), as the throttle judged it."""
        self.stats.refusals[kind] += 1

    def retrying(self, started: bool) -> None:
        """A job's first retry begins (True) or its retries ended (False)."""
        self.stats.retrying += 1 if started else -1

    def retried(self, cause: str) -> None:
        """An attempt failed and will be retried."""
        self.stats.retries[cause] += 1

    def succeeded(self) -> None:
        """A job's answer was written."""
        self.stats.succeeded += 1

    def failed(self, code: str = "") -> None:
        """A job's failure was written (with its error code)."""
        self.stats.failed += 1
        if code == "invalid_output":
            self.stats.invalid_output += 1

    def reasked(self) -> None:
        """An answer its schema refused was asked for again."""
        self.stats.reasks += 1

    def cut(self) -> None:
        """An answer came cut at max_tokens (finish_reason: length)."""
        self.stats.truncated += 1

    def cache_hit(self) -> None:
        """A job's answer came from the cache: written, sent nothing, cost nothing."""
        self.stats.succeeded += 1
        self.stats.cache_hits += 1

    def cache_miss(self) -> None:
        """A job's request was not in the cache."""
        self.stats.cache_misses += 1

    def deduplicated(self) -> None:
        """A job's outcome came from another job that asked the same request."""
        self.stats.deduplicated += 1
