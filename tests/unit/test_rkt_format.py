"""rkt list / status / image list output, without root."""

from __future__ import annotations

import json

import pytest

from rkt.format import (
    format_json,
    format_list,
    humanize_since,
    image_rows,
    pod_json,
    status_lines,
    tab_align,
)
from rkt.state import AppState, NetworkState, PodState

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (0.2, "now"),
        (1.5, "1 second ago"),
        (10, "10 seconds ago"),
        (59.9, "59 seconds ago"),
        (60, "1 minute ago"),
        (150, "2 minutes ago"),
        (3600, "1 hour ago"),
        (5 * 3600, "5 hours ago"),
        (86400, "1 day ago"),
        (3 * 86400, "3 days ago"),
        (8 * 86400, "1 week ago"),
        (40 * 86400, "1 month ago"),
        (400 * 86400, "1 year ago"),
        (-3, "3 seconds from now"),
    ],
)
def test_humanize(age, text):
    assert humanize_since(NOW - age, NOW) == text


def pod(uuid="6876aae5-1111-4222-8333-444455556666", state="running", **kw):
    p = PodState(
        uuid=uuid,
        state=state,
        app=AppState(
            "busybox", "registry-1.docker.io/library/busybox:latest", "sha512-" + "a" * 128
        ),
        created=NOW - 11,
        started=NOW - 11,
        pid=4242,
        **kw,
    )
    p.networks = [
        NetworkState("network1", "eth0", ip4="10.0.0.2", added=True),
        NetworkState("default-restricted", "eth1", ip4="172.31.0.2", added=True),
    ]
    return p


def test_list_is_tab_separated_and_cut_f1_gives_the_uuid():
    text = format_list([(pod(), "running")], NOW)
    head, row = text.splitlines()
    assert [c for c in head.split("\t") if c] == [
        "UUID", "APP", "IMAGE NAME", "STATE", "CREATED", "STARTED", "NETWORKS",
    ]  # fmt: skip
    cells = [c for c in row.split("\t") if c]
    assert cells == [
        "6876aae5",
        "busybox",
        "registry-1.docker.io/library/busybox:latest",
        "running",
        "11 seconds ago",
        "11 seconds ago",
        "network1:ip4=10.0.0.2, default-restricted:ip4=172.31.0.2",
    ]
    assert row.split("\t")[0] == "6876aae5"  # what `cut -f1` sees
    no_legend = format_list([(pod(), "running")], NOW, legend=False)
    assert no_legend.splitlines() == [row]


def test_tab_alignment_pads_to_tab_stops():
    text = tab_align([["a", "b"], ["longer-than-8", "c"]])
    a, b = text.splitlines()
    assert a == "a\t\tb" and b == "longer-than-8\tc"


def test_list_full_has_full_uuid_image_id_and_absolute_times():
    text = format_list([(pod(), "running")], NOW, full=True)
    head, row = (line.split("\t") for line in text.splitlines())
    assert "IMAGE ID" in head
    cells = [c for c in row if c]
    assert cells[0] == "6876aae5-1111-4222-8333-444455556666"
    assert cells[3] == "sha512-aaaaaaaaaaaa"
    assert cells[5][:4].isdigit() and "ago" not in cells[5]


def test_pod_without_start_and_garbage_pod():
    p = pod(state="prepared")
    p.started = None
    row = format_list([(p, "prepared")], NOW, legend=False).rstrip("\n").split("\t")
    assert row[4:] == [
        "11 seconds ago",
        "",
        "network1:ip4=10.0.0.2, default-restricted:ip4=172.31.0.2",
    ]
    g = pod(state="garbage")  # gc tore its networks down: none are listed
    row = format_list([(g, "garbage")], NOW, legend=False).rstrip("\n").split("\t")
    assert row[3] == "garbage" and row[-1] == ""


def test_json_formats():
    obj = pod_json(pod(), "running")
    assert obj["name"] == "6876aae5-1111-4222-8333-444455556666"
    assert obj["app_names"] == ["busybox"]
    assert obj["networks"][0] == {
        "netName": "network1", "netConf": "", "ifName": "eth0", "ip": "10.0.0.2", "args": "",
    }  # fmt: skip
    assert obj["created_at"] == int((NOW - 11) * 1e9)
    assert json.loads(format_json([obj], pretty=False)) == [obj]
    assert "\n\t" in format_json([obj], pretty=True)


def test_status_running_and_exited():
    lines = status_lines(pod(), "running")
    assert lines[0] == "state=running"
    assert lines[1].startswith("created=") and lines[2].startswith("started=")
    assert "networks=network1:ip4=10.0.0.2, default-restricted:ip4=172.31.0.2" in lines
    assert lines[-2:] == ["pid=4242", "exited=false"]
    p = pod(state="exited")
    p.app.exit_code = 3
    lines = status_lines(p, "exited")
    assert lines[-3:] == ["pid=-1", "exited=true", "app-busybox=3"]


def test_image_rows():
    rows = image_rows(
        [{"id": "sha512-" + "b" * 128, "display_name": "busybox:latest", "size": 2_000_000,
          "imported": NOW - 120, "last_used": None}],
        NOW,
    )  # fmt: skip
    assert rows[0] == ["ID", "NAME", "SIZE", "IMPORT TIME", "LAST USED"]
    assert rows[1] == ["sha512-bbbbbbbbbbbb", "busybox:latest", "1.9 MiB", "2 minutes ago", ""]
