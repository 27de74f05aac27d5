"""The node API transport: routing, JSON errors, unix socket perms, token on TCP."""

import os
import stat

import httpx
import pytest

from agent.api.server import APIError, APIServer, Router, Stream
from calico.nodeapi import NodeAPIError, NodeClient


def make_router():
    router = Router()
    pods = {"abc": {"uuid": "abc", "state": "running"}}
    router.add("GET", "/v1/health", lambda r: {"ok": True}, "health")
    router.add("GET", "/v1/pods", lambda r: list(pods.values()), "pods")

    def remove(req):
        if req.params["uuid"] not in pods:
            raise APIError(404, f"no pod {req.params['uuid']}")
        return pods.pop(req.params["uuid"])

    router.add("DELETE", "/v1/pods/{uuid}", remove, "remove a pod")
    router.add("POST", "/v1/echo", lambda r: {"got": r.body}, "echo")
    router.add("GET", "/v1/flows", lambda r: Stream(iter([{"n": 1}, {"n": 2}])), "flows")
    router.add("GET", "/v1/boom", lambda r: 1 / 0, "a bug")
    return router


@pytest.fixture
def server(tmp_path):
    srv = APIServer(make_router(), tmp_path / "agent.sock", tcp=("127.0.0.1", 0), token="s3cret")
    srv.start()
    yield srv
    srv.stop()


def test_router_matches_and_refuses():
    router = make_router()
    handler, params = router.match("DELETE", "/v1/pods/xyz")
    assert params == {"uuid": "xyz"}
    with pytest.raises(APIError) as err:
        router.match("POST", "/v1/pods")
    assert err.value.status == 405
    with pytest.raises(APIError) as err:
        router.match("GET", "/v1/nothing")
    assert err.value.status == 404
    doc = router.openapi()
    assert "/v1/pods/{uuid}" in doc["paths"] and "delete" in doc["paths"]["/v1/pods/{uuid}"]


def test_unix_socket_is_root_only_and_answers(server):
    mode = stat.S_IMODE(os.stat(server.socket_path).st_mode)
    assert mode == 0o600
    with NodeClient(f"unix://{server.socket_path}") as client:
        assert client.health() == {"ok": True}
        assert client.pods()[0]["uuid"] == "abc"
        with pytest.raises(NodeAPIError) as err:
            client.remove_pod("nope")
        assert err.value.status == 404 and "no pod nope" in str(err.value)
        assert client.remove_pod("abc")["uuid"] == "abc"
        assert client.pods() == []
        assert list(client.flows()) == [{"n": 1}, {"n": 2}]


def test_errors_are_json_never_a_trace(server):
    transport = httpx.HTTPTransport(uds=str(server.socket_path))
    with httpx.Client(transport=transport, base_url="http://node") as http:
        bad = http.post(
            "/v1/echo", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
        boom = http.get("/v1/boom")
        assert boom.status_code == 500 and boom.json()["error"].startswith("internal error")
        assert "Traceback" not in boom.text


def test_tcp_requires_the_token(server):
    host, port = server.tcp_address
    assert httpx.get(f"http://{host}:{port}/v1/health").status_code == 401
    wrong = httpx.get(f"http://{host}:{port}/v1/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    with NodeClient(f"http://{host}:{port}", token="s3cret") as client:
        assert client.health() == {"ok": True}


def test_tcp_without_token_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="token"):
        APIServer(make_router(), None, tcp=("127.0.0.1", 0)).start()
