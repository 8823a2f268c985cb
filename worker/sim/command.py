"""`mira-batch simulate`: the simulator's command-line options and its serve loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from worker.config import KEY_FORMAT, KEY_PATTERN
from worker.errors import ConfigError
from worker.logs import emit
from worker.sim.faults import MIRA_PROFILE, Faults

if TYPE_CHECKING:
    from worker.sim.server import Simulator

_HELP = {
    "seed": "seed of every fault decision",
    "behaviour": "docs: as Mira's documentation says; source: as its backend source "
    "does (window refusals stay in the window and answer its whole length, slots "
    "leak on a 408, a disconnect or a full GPU queue, an empty 408, word usage)",
    "latency_ms": "latency per request, ms (the median with --latency-sigma)",
    "latency_jitter_ms": "extra random latency up to this many ms",
    "latency_sigma": "log-normal latency around --latency-ms with this sigma; 0 = off",
    "latency_ms_per_kchar": "extra latency per 1,000 bytes of request, ms",
    "server_timeout_s": "answer 408 when a request would take longer, s; 0 = never",
    "p429": "probability of a 429 with --retry-after",
    "retry_after": "Retry-After of injected 429s, seconds",
    "p500": "probability of a 500",
    "p502": "probability of a 502 with an HTML body",
    "p503": "probability of a 503",
    "p_drop": "probability of dropping the connection without an answer",
    "p_truncate": "probability of cutting the connection mid-body",
    "p_malformed": "probability of a 200 whose body is not valid JSON",
    "p_quota": "probability of a 429 insufficient_quota (treated as 402)",
    "p_upstream_error": "probability of a 200 whose answer is Mira's upstream-error "
    "text ('Ошибка: ...')",
    "p_moderated": "probability of a 200 whose answer moderation withheld",
    "p_empty": "probability of a 200 with no content",
    "p_prose": "with a schema in the request: probability of an answer in prose, "
    "no JSON in it",
    "p_fenced": "with a schema: probability of the JSON in a ```json fence",
    "p_broken_json": "with a schema: probability of JSON that does not parse",
    "p_missing_field": "with a schema: probability of JSON missing a required field",
    "p_length": "probability of an answer cut at max_tokens (finish_reason length)",
    "max_in_flight": "requests in flight per user before 429s (Mira: 3); 0 = no limit",
    "in_flight_retry_after": "Retry-After of those 429s, seconds (Mira: 5)",
    "slot_ttl_s": "with --behaviour source: leaked in-flight slots are freed this "
    "long after the last successful acquire, s (Mira: 300)",
    "leaked_slots": "with --behaviour source: in-flight slots already held when "
    "the first request arrives (an earlier run's, stopped hard)",
    "window_requests": "sliding window: N requests per --window-s per user "
    "(Mira: 60); 429 with the seconds until the oldest leaves (source: the "
    "whole window, and the refusal stays in it); 0 = off",
    "window_s": "the sliding window's length, seconds (Mira: 60)",
    "monthly_tokens": "429 with Retry-After 86400 once the user used this many "
    "tokens; 0 = no budget",
    "gpu_slots": "generations at once across all users; 0 = unlimited",
    "gpu_queue": "requests that may wait for a GPU slot; beyond, 429 Retry-After 10",
    "gpu_wait_s": "longest wait for a GPU slot before a 429 Retry-After 10, s",
    "revoke_after": "revoke every key in use at the account's Nth request: 401 for "
    "it from then on, while a key first used later (a rotation) stays good; "
    "0 = never",
    "payment_after": "402 after N requests per key; 0 = never",
    "daily_cap": "429 with Retry-After 3600 once N of the day's messages are used "
    "per user (a request past the sliding window counts, refused or not); the day "
    "turns at 00:00 UTC on the simulator's clock (faketime moves it); 0 = no cap",
    "daily_used": "messages the account's people already used today, when the "
    "simulator starts (counted against --daily-cap)",
    "account_delay_s": "the account routes (usage, me, balance, pricing) answer "
    "after this many seconds; longer than the client's timeout: never",
    "plan": "plan of every key: free, pro or max (gates models with 403)",
    "balance_kopecks": "the account's balance the account routes report, kopecks",
    "echo_key": "a careless server: 401/402 details quote the key, 'bearer' "
    "(with its prefix) or 'bare' (the secret part only)",
}


def add_simulate_options(p: argparse.ArgumentParser) -> None:
    """Every Faults field becomes a --flag."""
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=8080,
        help="port; 0 picks a free one (default: 8080)",
    )
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="K",
        help="accept this key (repeatable); without it one is generated and printed",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="serve https with this certificate chain (and --tls-key): a rehearsal "
        "behind a proxy or a private CA",
    )
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    p.add_argument(
        "--profile",
        choices=["mira"],
        help="start from Mira as its backend source behaves: "
        + ", ".join(
            f"{name.replace('_', '-')} {value}"
            if isinstance(value, str)
            else f"{name.replace('_', '-')} {value:g}"
            for name, value in MIRA_PROFILE.items()
        )
        + "; flags given beside it win",
    )
    defaults = Faults()
    group = p.add_argument_group("fault injection (deterministic for a given --seed)")
    for f in fields(Faults):
        default = getattr(defaults, f.name)
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(default),
            default=None,  # None: not given, so a --profile value stands
            help=f"{_HELP[f.name]} (default: {default})",
        )


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The Faults the flags describe, over the profile if one is named."""
    given = {
        f.name: getattr(args, f.name)
        for f in fields(Faults)
        if getattr(args, f.name) is not None
    }
    try:
        base = Faults().updated(MIRA_PROFILE if args.profile == "mira" else {})
        return base.updated(given)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context, when --tls-cert asks for https.

    Raises:
        ConfigError: one of the pair is missing, or the files do not load.
    """
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    return context


async def _serve(
    sim: Simulator, host: str, port: int, tls: ssl.SSLContext | None
) -> None:
    await sim.start(host, port, tls=tls)
    emit(sys.stdout, f"Mira simulator on {sim.base_url} (stats: GET /_sim/stats)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def run_simulate(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns 0."""
    # Imported here: every command builds the parser, only this one serves.
    from worker.sim.server import Simulator

    for key in args.key:
        if not KEY_PATTERN.fullmatch(key):
            raise ConfigError(f"--key must be {KEY_FORMAT}")
    tls = _tls(args)
    sim = Simulator(keys=args.key or None, faults=faults_from_args(args))
    if not args.key:
        # The simulator's own throwaway key: printing it is the point, so it
        # bypasses the scrubbing `emit`.
        print(f"generated key (export it as MIRA_API_KEY): {next(iter(sim.keys))}")  # noqa: T201
        sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, args.host, args.port, tls))
    return 0
