"""Issue 16, network faults: a partition (and, where the kernel has sch_netem, latency and loss)
between the engine and an MLLP peer in a network namespace the test creates. Every message is
delivered once the fault clears, within its attempts and a time bound, and the peer holds each
message once. Skipped with the exact reason when not root, without ip/tc, netns, veth or netem.
Longer forms: ``faults/network.py`` (results in ``faults/results/network.md``)."""

from __future__ import annotations

import pytest

from tests import pg
from tests.faults import netns
from tests.faults.network_cases import check, impaired, partition, run, run_store_partition

MESSAGES = 6


@pytest.fixture
def link():
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    with netns.Link() as created:
        yield created


@pytest.fixture
def netem_link(link):
    reason = netns.unavailable(need_netem=True)
    if reason:
        pytest.skip(reason)
    return link


def test_a_partition_mid_delivery_heals_without_loss_or_new_identities(link, tmp_path):
    check(run("partition 2 s", link, tmp_path, MESSAGES, partition(link, 2.0)))


@pytest.mark.parametrize("spec", [("delay", "150ms", "50ms"), ("loss", "25%")], ids=["latency", "loss"])
def test_latency_and_loss_still_deliver_everything_once(netem_link, tmp_path, spec):
    check(run(" ".join(spec), netem_link, tmp_path, MESSAGES, impaired(netem_link, 3.0, *spec)))


def test_a_partition_from_postgresql_heals_and_the_node_carries_on(link, tmp_path):
    """The node's store connections cross the link (a forwarder in the namespace to the local server);
    cut for 3 s while messages arrive and deliver, the node must finish every message by itself."""
    with pg.database() as url:
        check(run_store_partition("PostgreSQL partition 3 s", link, tmp_path, MESSAGES, 3.0, url))
