"""The node API reads the agent only through AgentView: the real Agent is one, and the API
runs over a small fake that implements it."""

from __future__ import annotations

from agent.api.node import NodeService
from agent.api.view import AgentView
from agent.main import Agent
from tests.unit.fake_agent import FakeAgent


def test_the_agent_and_the_fake_implement_the_view() -> None:
    assert isinstance(Agent("view-node"), AgentView)
    assert isinstance(FakeAgent("view-node"), AgentView)


def test_the_api_answers_over_the_fake(tmp_path) -> None:
    service = NodeService(
        FakeAgent("fake-node"), rkt_dir=str(tmp_path / "rkt"), local_config=str(tmp_path)
    )
    try:
        health = service.health(None)
        assert health["node"] == "fake-node" and health["in_sync"] is False
        assert service.endpoints(None) == []
        assert service.pods(None) == []
        metrics = service.metrics(None).body
        assert "calico_agent_apply_seconds_count 0" in metrics
        assert "calico_agent_resyncs_total 0" in metrics
    finally:
        service.close()
