"""--net parsing and net.d resolution (rkt 1.x rules), without root."""

from __future__ import annotations

import json

import pytest

from rkt.netconf import (
    NetError,
    NetRequest,
    builtin_networks,
    load_net_dir,
    parse_net_flags,
    plan_networks,
)


def test_no_flag_and_bare_flag_mean_default():
    assert parse_net_flags([]) == [NetRequest("default")]
    assert parse_net_flags([""]) == [NetRequest("default")]


def test_repeatable_and_comma_separated_with_args():
    got = parse_net_flags(["network1:IP=10.0.0.2;K=V", "a,b:X=1"])
    assert got == [
        NetRequest("network1", "IP=10.0.0.2;K=V"),
        NetRequest("a"),
        NetRequest("b", "X=1"),
    ]


@pytest.mark.parametrize(
    "value",
    [
        ",",  # empty name
        "a:b:c",  # two colons
        "a,a",  # duplicate
        "host:X=1",  # special names take no args
        "all:X=1",
        "net work",  # not a CNI network name
        "n:IP",  # not KEY=VALUE
        "n:",  # empty args
        "host,n1",  # host alone
        "none,default",
    ],
)
def test_malformed(value):
    with pytest.raises(NetError):
        parse_net_flags([value])


def test_duplicate_across_flags():
    with pytest.raises(NetError):
        parse_net_flags(["a", "a:IP=1.2.3.4"])


def write(d, name, conf):
    (d / name).write_text(json.dumps(conf))


@pytest.fixture
def netd(tmp_path):
    d = tmp_path / "net.d"
    d.mkdir()
    write(d, "20-b.conf", {"name": "b", "type": "ptp"})
    write(d, "10-a.conf", {"name": "a", "type": "calico", "cniVersion": "0.1.0"})
    write(d, "30-c.conflist", {"name": "c", "cniVersion": "0.4.0", "plugins": [{"type": "ptp"}]})
    write(d, "40-a-again.conf", {"name": "a", "type": "bridge"})
    (d / "README").write_text("not a network")
    return d


def test_load_order_is_file_name_order(netd):
    nets = load_net_dir(str(netd))
    assert [(n.filename, n.name) for n in nets] == [
        ("10-a.conf", "a"),
        ("20-b.conf", "b"),
        ("30-c.conflist", "c"),
        ("40-a-again.conf", "a"),
    ]
    assert nets[2].is_list and not nets[0].is_list


def test_missing_dir_is_no_networks(tmp_path):
    assert load_net_dir(str(tmp_path / "nope")) == []


def test_broken_file_is_an_error(tmp_path):
    (tmp_path / "1.conf").write_text("{nope")
    with pytest.raises(NetError, match="1.conf"):
        load_net_dir(str(tmp_path))


def plan(netd, flags, tmp_path):
    return plan_networks(
        parse_net_flags(flags), load_net_dir(str(netd)), builtin_networks(str(tmp_path))
    )


def test_user_network_gets_default_restricted_after_it(netd, tmp_path):
    p = plan(netd, ["b:IP=10.0.0.9"], tmp_path)
    assert [(s.config.name, s.ifname, s.args) for s in p.networks] == [
        ("b", "eth0", "IP=10.0.0.9"),
        ("default-restricted", "eth1", ""),
    ]
    assert p.networks[1].config.conf["ipam"]["subnet"] == "172.31.0.0/16"


def test_interfaces_follow_file_order_not_flag_order(netd, tmp_path):
    p = plan(netd, ["c,b,a"], tmp_path)
    assert [(s.config.name, s.ifname) for s in p.networks] == [
        ("a", "eth0"),
        ("b", "eth1"),
        ("c", "eth2"),
        ("default-restricted", "eth3"),
    ]
    assert any("already defined" in w for w in p.warnings)  # 40-a-again.conf ignored


def test_default_and_all(netd, tmp_path):
    p = plan(netd, [], tmp_path)
    assert [s.config.name for s in p.networks] == ["default"]
    assert p.networks[0].config.conf["ipMasq"] is True
    assert p.networks[0].config.conf["ipam"]["subnet"] == "172.16.28.0/24"
    p = plan(netd, ["all"], tmp_path)
    assert [s.config.name for s in p.networks] == ["a", "b", "c", "default"]


def test_user_file_overrides_builtin(tmp_path):
    d = tmp_path / "net.d"
    d.mkdir()
    write(d, "10-default.conf", {"name": "default", "type": "bridge"})
    p = plan(d, ["default"], tmp_path)
    assert [(s.config.name, s.config.conf["type"]) for s in p.networks] == [("default", "bridge")]


def test_unknown_network(netd, tmp_path):
    with pytest.raises(NetError, match="networks not found: nope, zzz"):
        plan(netd, ["zzz,nope,a"], tmp_path)


def test_host_and_none(netd, tmp_path):
    assert plan(netd, ["host"], tmp_path).mode == "host"
    p = plan(netd, ["none"], tmp_path)
    assert p.mode == "none" and p.networks == []
