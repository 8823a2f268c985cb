"""Reaching Mira from a corporate network: through an HTTPS proxy (CONNECT) the
environment names, trusting a private CA, and never showing the proxy the key."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.batch import Batch
from tests.helpers import SENTINEL_KEY, simple_jobs, write_jobs
from tests.proxy import TunnelProxy
from worker.api.network import proxy_for
from worker.sim.faults import Faults
from worker.sim.server import Simulator

if TYPE_CHECKING:
    import trustme

# A name only the proxy can resolve: without the tunnel there is no way in.
HOST = "api.mira.test"


@pytest.fixture
def ca() -> trustme.CA:
    import trustme  # cryptography with it: loaded where a test needs a CA

    return trustme.CA()


@pytest.fixture
async def tls_sim(ca: trustme.CA) -> AsyncIterator[Simulator]:
    """The simulator over TLS, with a certificate for HOST from the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    simulator = Simulator(keys=[SENTINEL_KEY], faults=Faults(seed=3, p500=0.05))
    await simulator.start("127.0.0.1", 0, tls=context)
    try:
        yield simulator
    finally:
        await simulator.stop()


async def test_a_run_through_a_connect_proxy_with_a_private_ca_finishes_every_job(
    tls_sim: Simulator,
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(40))
    async with TunnelProxy({HOST: "127.0.0.1"}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        batch = Batch(tls_sim, tmp_path)
        code = await batch.run(base_url=f"https://{HOST}:{tls_sim.port}/v1")
    assert code == 0, batch.summary
    assert len(batch.results) == 40
    assert batch.summary["cost"]["prices"] == "charged"  # the pricing route, too
    assert proxy.connects
    assert set(proxy.connects) == {f"{HOST}:{tls_sim.port}"}
    assert not proxy.refused
    assert len(proxy.carried) > 40 * 200
    assert SENTINEL_KEY.encode() not in proxy.carried
    assert b"Bearer" not in proxy.carried
    assert b"prompt number" not in proxy.carried  # nor the prompts


async def test_ca_bundle_adds_the_private_ca_and_no_proxy_goes_direct(
    ca: trustme.CA,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    sim = Simulator(keys=[SENTINEL_KEY], faults=Faults())
    await sim.start("127.0.0.1", 0, tls=context)
    try:
        write_jobs(tmp_path / "jobs.jsonl", simple_jobs(5))
        # A proxy that refuses everything: NO_PROXY must keep the run off it.
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "localhost")
        batch = Batch(sim, tmp_path)
        url = f"https://localhost:{sim.port}/v1"
        assert await batch.run(base_url=url, ca_bundle=bundle) == 0
        assert len(batch.results) == 5
        # The pricing route too, directly, trusting the same bundle.
        assert batch.summary["cost"]["prices"] == "charged"
    finally:
        await sim.stop()


async def test_an_untrusted_certificate_stops_the_run_at_once_naming_the_proxy(
    tls_sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(30))
    async with TunnelProxy({HOST: "127.0.0.1"}) as proxy:
        monkeypatch.setenv("https_proxy", f"http://user:secret@127.0.0.1:{proxy.port}")
        batch = Batch(tls_sim, tmp_path)
        code = await batch.run(base_url=f"https://{HOST}:{tls_sim.port}/v1")
    assert_stopped_untrusted(batch, code, tls_sim)
    assert f"through the proxy http://127.0.0.1:{proxy.port}" in caplog.text
    assert "secret" not in caplog.text  # the proxy's password is never shown


async def test_an_untrusted_certificate_stops_a_direct_run_at_once(
    tls_sim: Simulator, tmp_path: Path
) -> None:
    write_jobs(tmp_path / "jobs.jsonl", simple_jobs(30))
    batch = Batch(tls_sim, tmp_path)
    code = await batch.run(base_url=f"https://localhost:{tls_sim.port}/v1")
    assert_stopped_untrusted(batch, code, tls_sim)


def assert_stopped_untrusted(batch: Batch, code: int, sim: Simulator) -> None:
    """Exit 6 before a request reached the server, naming what to do; at
    once, not 30 failures one by one."""
    assert code == 6
    assert sim.stats.requests == 0
    assert "not trusted" in batch.summary["message"]
    assert "--ca-bundle" in batch.summary["message"]
    assert len(batch.errors) < 30


def test_proxy_variables_in_either_case_and_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert proxy_for("https://api.vmira.ai/v1") is None
    monkeypatch.setenv("https_proxy", "proxy.corp:3128")
    found = proxy_for("https://api.vmira.ai/v1")
    assert found is not None
    assert found.shown == "http://proxy.corp:3128"
    monkeypatch.setenv("NO_PROXY", ".vmira.ai")
    assert proxy_for("https://api.vmira.ai/v1") is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("https_proxy")
    monkeypatch.setenv("HTTP_PROXY", "http://u:p@proxy.corp:8080")
    plain = proxy_for("http://127.0.0.1:8000/v1")
    assert plain is not None
    assert plain.headers["Proxy-Authorization"].startswith("Basic ")
    assert plain.shown == "http://proxy.corp:8080"
    assert proxy_for("https://api.vmira.ai/v1") is None  # https has no proxy set


async def test_an_unreachable_proxy_is_named_in_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.api.client import ChatClient
    from worker.errors import TransportError

    monkeypatch.setenv("HTTPS_PROXY", "http://someone:hunter2@127.0.0.1:9")
    client = ChatClient(
        f"https://{HOST}/v1", SENTINEL_KEY, timeout_s=5, max_connections=1
    )
    async with client:
        with pytest.raises(TransportError) as caught:
            await client.complete(b"{}")
    assert "through the proxy http://127.0.0.1:9" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_simulate_serves_https_only_with_a_whole_certificate_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: trustme.CA
) -> None:
    from tests.helpers import call_main, cli_env

    half = call_main(
        "simulate",
        "--tls-cert",
        "cert.pem",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert half.code == 2
    assert "--tls-cert and --tls-key go together" in half.stderr
    ca.cert_pem.write_to_path(str(tmp_path / "cert.pem"))
    (tmp_path / "key.pem").write_text("not a key")
    broken = call_main(
        "simulate",
        "--tls-cert",
        "cert.pem",
        "--tls-key",
        "key.pem",
        cwd=tmp_path,
        env=cli_env(),
        monkeypatch=monkeypatch,
    )
    assert broken.code == 2
    assert "cannot load --tls-cert/--tls-key" in broken.stderr
