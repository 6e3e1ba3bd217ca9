"""Fixtures of the failure tests: a fresh broker per module (its memory is never freed), and
pools of ``chatstream run`` processes whose log tails are attached to a failing test's report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from workers import WorkerPool, create_topics, make_settings

from infra.broker import EmbeddedBroker

PoolFactory = Callable[..., Awaitable[WorkerPool]]


@pytest.fixture(scope="module")
def module_broker() -> Iterator[EmbeddedBroker]:
    """A broker for this test module only."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
async def pool_factory(module_broker: EmbeddedBroker, tmp_path: Path,
                       request: pytest.FixtureRequest) -> AsyncIterator[PoolFactory]:
    """Build a WorkerPool (unique group and topics, created) from setting overrides; every
    worker still running at the end of the test is killed."""
    pools: list[WorkerPool] = []
    request.node.reliability_pools = pools

    async def build(**overrides: object) -> WorkerPool:
        settings = make_settings(module_broker.bootstrap_servers, **overrides)
        await create_topics(settings)
        pool = WorkerPool(settings, tmp_path)
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        await pool.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for pool in getattr(item, "reliability_pools", []):
            report.sections.append(("chatstream worker logs", pool.logs()))
