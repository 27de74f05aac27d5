"""The console's views as data: rows, states, filters, completion."""

from console.model import (
    VIEWS,
    NodeInfo,
    RowFilter,
    bar,
    bgp_peer_lines,
    bgp_summary,
    complete_view,
)

from .fixtures import seed_state


def cells(view):
    return [r.cells for r in VIEWS[view].rows(seed_state())]


def test_nodes_show_agent_reachability_pods_and_blocks():
    rows = {r.cells[0]: r for r in VIEWS["nodes"].rows(seed_state())}
    assert rows["calico-01"].cells[1:] == (
        "10.213.0.11", "ready", "2/2", "1/2 up", "192.168.0.0/26"
    )  # fmt: skip
    assert rows["calico-01"].state == "running"
    assert rows["calico-02"].cells[2] == "unreachable" and rows["calico-02"].state == "down"


def test_bgp_cell_says_peers_up_or_why_there_are_none():
    assert bgp_summary(seed_state().nodes["calico-01"]) == "1/2 up"
    assert bgp_summary(NodeInfo(reachable=True, bgp_error="not served by this agent")) == "n/a"
    assert bgp_summary(NodeInfo(reachable=False)) == ""
    assert bgp_summary(NodeInfo(reachable=True, bgp={"backend": "direct"})) == "direct"
    down = {"backend": "bird", "running": False, "peers": []}
    assert bgp_summary(NodeInfo(reachable=True, bgp=down)) == "bird down"
    lonely = {"backend": "bird", "running": True, "peers": []}
    assert bgp_summary(NodeInfo(reachable=True, bgp=lonely)) == "no peers"


def test_bgp_peer_lines_are_calicoctl_node_status_columns():
    lines = bgp_peer_lines(seed_state().nodes["calico-01"])
    assert lines[0] == "BGP: backend bird, BIRD running, router id 10.213.1.11"
    header = lines[3].split()
    assert header == ["PEER", "ADDRESS", "PEER", "TYPE", "STATE", "SINCE", "INFO"]
    assert lines[4].split()[:5] == ["10.213.1.254", "node", "specific", "up", "07:09:34"]
    assert lines[5].endswith("Active Socket: Connection refused")
    missing = NodeInfo(reachable=True, bgp_error="not served by this agent")
    assert bgp_peer_lines(missing) == ["BGP: not served by this agent"]
    assert bgp_peer_lines(None) == ["BGP: not known yet"]


def test_networks_join_cni_files_profiles_and_pools():
    rows = {r[0]: r for r in cells("networks")}
    assert rows["network1"] == ("network1", "calico", "calico-01", "yes", "192.168.0.0/16", "2")
    assert rows["network2"][5] == "1"


def test_profiles_list_rules_labels_and_members():
    assert cells("profiles") == [
        ("network1", "1", "1", "network1", "2"),
        ("network2", "1", "1", "network2", "1"),
    ]


def test_pool_usage_counts_allocations_in_its_blocks():
    (row,) = cells("pools")
    assert row[:4] == ("default-ipv4-ippool", "192.168.0.0/16", "/26", "2") and row[4].endswith(
        "3/65536"
    )


def test_pods_come_from_node_agents_with_networks():
    rows = cells("pods")
    assert rows[1][:3] == ("6876aae5", "calico-01", "busybox")
    assert rows[1][5] == "network1:ip4=192.168.0.1, default-restricted:ip4=172.31.0.2"


def test_endpoint_status_comes_from_the_agent_report():
    rows = {r.cells[2]: r.state for r in VIEWS["endpoints"].rows(seed_state())}
    assert rows == {
        "192.168.0.1/32": "programmed",
        "192.168.0.65/32": "pending",
        "192.168.0.66/32": "pending",
    }


def test_policies_show_scope_order_selector():
    assert cells("policies") == [("allow-web", "global", "100", "has(network1)", "Ingress", "2/0")]


def test_filter_regex_and_negation():
    rows = VIEWS["endpoints"].rows(seed_state())
    assert len(RowFilter("network2").apply(rows)) == 1
    assert len(RowFilter("!network2").apply(rows)) == 2
    assert len(RowFilter("calico-0[12]").apply(rows)) == 3
    assert len(RowFilter("(unclosed").apply(rows)) == 0  # half-typed regex is taken literally


def test_completion_and_bar():
    assert complete_view("po") == ["pools", "pods", "policies"]
    assert complete_view(":ma") == ["matrix"]
    assert bar(3, 12, width=4) == "█░░░ 3/12"
