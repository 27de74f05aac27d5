"""The CNI spec layer: request parsing, result shapes per version, error codes."""

from __future__ import annotations

import ipaddress
import json

import pytest

from plugin import errors
from plugin.errors import CNIError
from plugin.result import DNS, Interface, IPConfig, Result, Route, parse_result
from plugin.spec import (
    SUPPORTED_VERSIONS,
    Request,
    dispatch,
    parse_cni_args,
    parse_env,
    parse_request,
    version_info,
)

BASE_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "3d1b5e0c-7a8e-4c3f-9a57-0c0ffee00001",
    "CNI_NETNS": "/var/run/netns/pod1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/usr/lib/cni:/opt/cni/bin",
}


def conf(version: str | None = "0.3.1", **fields: object) -> str:
    data: dict[str, object] = {
        "name": "network1",
        "type": "calico",
        "ipam": {"type": "calico-ipam"},
        "etcd_endpoints": "http://127.0.0.1:2379",
    }
    if version is not None:
        data["cniVersion"] = version
    data.update(fields)
    return json.dumps(data)


def env(**over: str) -> dict[str, str]:
    e = dict(BASE_ENV)
    e.update(over)
    return {k: v for k, v in e.items() if v is not None}


def sample_result() -> Result:
    return Result(
        interfaces=[
            Interface("cali3d1b5e0c-7a", mac="ee:ee:ee:ee:ee:ee"),
            Interface("eth0", mac="9a:1f:00:00:00:01", sandbox="/var/run/netns/pod1"),
        ],
        ips=[IPConfig(ipaddress.ip_interface("10.0.0.2/32"), interface=1)],
        routes=[Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("169.254.1.1"))],
    )


# ---- results ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_legacy_result_shape(version: str) -> None:
    r = sample_result()
    r.ips[0].gateway = ipaddress.ip_address("169.254.1.1")
    out = r.to_dict(version)
    assert out == {
        "cniVersion": version,
        "ip4": {
            "ip": "10.0.0.2/32",
            "gateway": "169.254.1.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
        },
        "dns": {},
    }


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_versioned_ips_result_shape(version: str) -> None:
    out = sample_result().to_dict(version)
    assert set(out) == {"cniVersion", "interfaces", "ips", "routes", "dns"}
    assert out["ips"] == [{"version": "4", "interface": 1, "address": "10.0.0.2/32"}]
    assert out["interfaces"][0] == {"name": "cali3d1b5e0c-7a", "mac": "ee:ee:ee:ee:ee:ee"}
    assert out["interfaces"][1]["sandbox"] == "/var/run/netns/pod1"
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_current_result_has_no_version_field(version: str) -> None:
    out = sample_result().to_dict(version)
    assert out["cniVersion"] == version
    assert out["ips"] == [{"interface": 1, "address": "10.0.0.2/32"}]
    assert "version" not in out["ips"][0]


def test_v11_extra_fields_only_in_v11() -> None:
    r = sample_result()
    r.interfaces[1].mtu = 1450
    r.routes[0].priority = 10
    assert r.to_dict("1.1.0")["interfaces"][1]["mtu"] == 1450
    assert r.to_dict("1.1.0")["routes"][0]["priority"] == 10
    assert "mtu" not in r.to_dict("1.0.0")["interfaces"][1]
    assert "priority" not in r.to_dict("1.0.0")["routes"][0]


def test_dns_rendered_when_set() -> None:
    r = sample_result()
    r.dns = DNS(nameservers=["10.96.0.10"], search=["svc.local"])
    for v in SUPPORTED_VERSIONS:
        assert r.to_dict(v)["dns"] == {"nameservers": ["10.96.0.10"], "search": ["svc.local"]}


def test_legacy_result_splits_families() -> None:
    r = Result(
        ips=[
            IPConfig(ipaddress.ip_interface("10.0.0.2/32")),
            IPConfig(ipaddress.ip_interface("fd00::2/128")),
        ],
        routes=[Route(ipaddress.ip_network("0.0.0.0/0")), Route(ipaddress.ip_network("::/0"))],
    )
    out = r.to_dict("0.2.0")
    assert out["ip4"] == {"ip": "10.0.0.2/32", "routes": [{"dst": "0.0.0.0/0"}]}
    assert out["ip6"] == {"ip": "fd00::2/128", "routes": [{"dst": "::/0"}]}


def test_result_unknown_version_is_code_1() -> None:
    with pytest.raises(CNIError) as exc:
        sample_result().to_dict("0.9.0")
    assert exc.value.code == errors.INCOMPATIBLE_VERSION


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_result_round_trip_every_version(version: str) -> None:
    original = sample_result()
    back = parse_result(original.to_dict(version))
    assert [str(ip.address) for ip in back.ips] == ["10.0.0.2/32"]
    assert [str(r.dst) for r in back.routes] == ["0.0.0.0/0"]
    if version not in ("0.1.0", "0.2.0"):
        assert back == original


def test_parse_result_uses_enclosing_version_when_missing() -> None:
    res = parse_result({"ip4": {"ip": "10.0.0.9/24", "gateway": "10.0.0.1"}}, "0.2.0")
    assert str(res.ips[0].address) == "10.0.0.9/24"
    assert str(res.ips[0].gateway) == "10.0.0.1"


@pytest.mark.parametrize(
    "bad",
    [
        {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.1/32"}]},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]},  # no prefix
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/32", "interface": 3}]},
        {"cniVersion": "1.0.0", "interfaces": "eth0"},
        {"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]},
        ["not", "an", "object"],
    ],
)
def test_parse_result_rejects_bad_shapes(bad: object) -> None:
    with pytest.raises(CNIError) as exc:
        parse_result(bad)
    assert exc.value.code == errors.INVALID_CONFIG


# ---- errors -------------------------------------------------------------------------------


def test_error_json_shape() -> None:
    err = CNIError(7, "invalid network config", "name is required")
    assert json.loads(err.to_json("0.3.1")) == {
        "cniVersion": "0.3.1",
        "code": 7,
        "msg": "invalid network config",
        "details": "name is required",
    }
    assert "details" not in json.loads(CNIError(11, "busy").to_json())
    assert str(err) == "invalid network config: name is required"


# ---- CNI_ARGS -----------------------------------------------------------------------------


def test_cni_args_ip_and_k8s() -> None:
    a = parse_cni_args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
        "K8S_POD_INFRA_CONTAINER_ID=abc;IP=10.0.0.7;FOO=bar"
    )
    assert a.ip == ipaddress.ip_address("10.0.0.7")
    assert (a.k8s_pod_namespace, a.k8s_pod_name) == ("default", "web-0")
    assert a.k8s_pod_infra_container_id == "abc"
    assert a.ignored == {"FOO": "bar"}


def test_cni_args_rkt_style_without_ignore_unknown() -> None:
    assert parse_cni_args("IP=192.168.0.5").ip == ipaddress.ip_address("192.168.0.5")
    assert parse_cni_args("").ip is None
    assert parse_cni_args("IP=10.0.0.1;").ip is not None


def test_cni_args_ignore_unknown_anywhere_in_string() -> None:
    assert parse_cni_args("FOO=1;IgnoreUnknown=true").ignored == {"FOO": "1"}


@pytest.mark.parametrize(
    "raw",
    [
        "FOO=bar",
        "IgnoreUnknown=0;FOO=bar",
        "IP",
        "IP=1=2",
        "=x",
        "IP=not-an-ip",
        "IgnoreUnknown=maybe",
    ],
)
def test_cni_args_rejected(raw: str) -> None:
    with pytest.raises(CNIError) as exc:
        parse_cni_args(raw)
    assert exc.value.code == errors.INVALID_ENVIRONMENT


# ---- environment --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
)
def test_missing_env_is_code_4(missing: str) -> None:
    e = env()
    del e[missing]
    with pytest.raises(CNIError) as exc:
        parse_env(e)
    assert exc.value.code == errors.INVALID_ENVIRONMENT


def test_del_without_netns_is_allowed() -> None:
    e = env(CNI_COMMAND="DEL")
    del e["CNI_NETNS"]
    assert parse_env(e).netns == ""


def test_version_needs_only_command() -> None:
    assert parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"


@pytest.mark.parametrize(
    "over",
    [
        {"CNI_COMMAND": "FROB"},
        {"CNI_CONTAINERID": "-starts-with-dash"},
        {"CNI_CONTAINERID": "has space"},
        {"CNI_IFNAME": "a-very-long-ifname0"},
        {"CNI_IFNAME": "eth/0"},
        {"CNI_IFNAME": ".."},
    ],
)
def test_bad_env_values(over: dict[str, str]) -> None:
    with pytest.raises(CNIError) as exc:
        parse_env(env(**over))
    assert exc.value.code == errors.INVALID_ENVIRONMENT


def test_cni_path_split() -> None:
    assert parse_env(env()).path == ["/usr/lib/cni", "/opt/cni/bin"]


# ---- config -------------------------------------------------------------------------------


def test_full_calico_config() -> None:
    req = parse_request(
        env(CNI_ARGS="IP=10.0.0.9"),
        conf(
            "0.3.1",
            nodename="calico-01",
            mtu=1450,
            log_level="DEBUG",
            log_file_path="/var/log/calico/cni.log",
            ipam={
                "type": "calico-ipam",
                "ipv4_pools": ["pool1", "10.1.0.0/16"],
                "assign_ipv4": "true",
                "future_knob": 3,
            },
            somethingNew={"x": 1},
        ),
    )
    c = req.conf
    assert c is not None and c.ipam is not None
    assert (c.name, c.type, c.cni_version, c.mtu) == ("network1", "calico", "0.3.1", 1450)
    assert c.log_level == "debug" and c.log_file == "/var/log/calico/cni.log"
    assert c.ipam.ipv4_pools == ["pool1", "10.1.0.0/16"] and c.ipam.assign_ipv4
    assert c.ipam.extra == {"future_knob": 3}
    assert c.extra == {"somethingNew": {"x": 1}}
    assert req.handle_id == f"network1.{BASE_ENV['CNI_CONTAINERID']}"
    assert req.nodename("Host-A") == "calico-01"
    assert req.etcd_endpoints() == "http://127.0.0.1:2379"


def test_missing_cni_version_means_0_1_0() -> None:
    req = parse_request(env(), conf(None))
    assert req.cni_version == "0.1.0"


def test_defaults_and_nodename_fallbacks() -> None:
    req = parse_request(env(), conf("1.0.0", etcd_endpoints=None))
    assert req.conf is not None and req.conf.mtu == 1500
    assert req.nodename("My-Host") == "my-host"
    assert req.etcd_endpoints() is None
    req2 = parse_request(
        env(CALICO_NODENAME="n7", ETCD_ENDPOINTS="http://e:2379"),
        conf("1.0.0", etcd_endpoints=None),
    )
    assert req2.nodename("x") == "n7" and req2.etcd_endpoints() == "http://e:2379"


def test_requested_ips_from_all_three_sources() -> None:
    req = parse_request(
        env(CNI_ARGS="IgnoreUnknown=1;IP=10.0.0.5"),
        conf(
            "1.0.0",
            args={"cni": {"ips": ["10.0.0.6/24", "10.0.0.5"]}},
            runtimeConfig={"ips": ["10.0.0.7"], "portMappings": []},
        ),
    )
    assert [str(ip) for ip in req.requested_ips()] == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    assert req.conf is not None and req.conf.runtime_config["portMappings"] == []


def test_prev_result_parsed_in_any_version() -> None:
    prev = sample_result().to_dict("0.4.0")
    req = parse_request(env(CNI_COMMAND="CHECK"), conf("0.4.0", prevResult=prev))
    assert req.conf is not None and req.conf.prev_result == sample_result()


def test_gc_attachments() -> None:
    e = {"CNI_COMMAND": "GC", "CNI_PATH": "/usr/lib/cni"}
    req = parse_request(
        e, conf("1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]})
    )
    assert req.conf is not None and req.conf.valid_attachments is not None
    assert req.conf.valid_attachments[0].container_id == "c1"


@pytest.mark.parametrize(
    "stdin",
    ["{not json", "", "[1, 2]", '"a string"', b"\xff\xfe", json.dumps({"cniVersion": 1})],
)
def test_malformed_stdin_is_code_6(stdin: str | bytes) -> None:
    with pytest.raises(CNIError) as exc:
        parse_request(env(), stdin)
    assert exc.value.code == errors.DECODE_FAILURE


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "latest", "1.0"])
def test_unknown_version_is_code_1(version: str) -> None:
    with pytest.raises(CNIError) as exc:
        parse_request(env(), conf(version))
    assert exc.value.code == errors.INCOMPATIBLE_VERSION


@pytest.mark.parametrize(
    ("command", "version"),
    [("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "0.4.0")],
)
def test_command_too_new_for_config_version(command: str, version: str) -> None:
    with pytest.raises(CNIError) as exc:
        parse_request(env(CNI_COMMAND=command), conf(version))
    assert exc.value.code == errors.INCOMPATIBLE_VERSION


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": 5},
        {"name": "bad/name"},
        {"type": None},
        {"mtu": "1500"},
        {"mtu": 20},
        {"mtu": True},
        {"ipam": {"ipv4_pools": []}},  # no type
        {"ipam": "calico-ipam"},
        {"ipam": {"type": "calico-ipam", "ipv4_pools": "10.0.0.0/16"}},
        {"ipam": {"type": "calico-ipam", "assign_ipv4": "yes"}},
        {"etcd_endpoints": ["http://a:2379"]},
        {"args": {"cni": {"ips": "10.0.0.1"}}},
        {"args": {"cni": {"ips": ["10.0.0.300"]}}},
        {"runtimeConfig": {"ips": [1]}},
        {"dns": {"nameservers": "8.8.8.8"}},
        {"prevResult": {"cniVersion": "1.0.0", "ips": "x"}},
    ],
)
def test_bad_config_is_code_7(fields: dict[str, object]) -> None:
    with pytest.raises(CNIError) as exc:
        parse_request(env(), conf("1.0.0", **fields))
    assert exc.value.code == errors.INVALID_CONFIG


def test_require_ipam() -> None:
    req = parse_request(env(), conf("1.0.0", ipam=None))
    assert req.conf is not None
    with pytest.raises(CNIError) as exc:
        req.conf.require_ipam()
    assert exc.value.code == errors.INVALID_CONFIG


def test_env_checked_before_stdin() -> None:
    # A request that is wrong in both ways reports the environment, as the reference skel.
    e = env()
    del e["CNI_IFNAME"]
    with pytest.raises(CNIError) as exc:
        parse_request(e, "{bad")
    assert exc.value.code == errors.INVALID_ENVIRONMENT


# ---- VERSION and dispatch -----------------------------------------------------------------


def test_version_info() -> None:
    assert version_info(conf("0.4.0")) == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }
    assert version_info("")["cniVersion"] == "1.1.0"
    assert version_info('{"cniVersion": "9.9.9"}')["cniVersion"] == "1.1.0"


def _add(req: Request) -> Result:
    return sample_result()


def test_dispatch_add_renders_config_version() -> None:
    for version in SUPPORTED_VERSIONS:
        reply = dispatch({"env": env(), "stdin": conf(version)}, {"ADD": _add})
        assert reply["exit_code"] == 0
        out = json.loads(reply["stdout"])
        assert out["cniVersion"] == version
        assert ("ip4" in out) == (version in ("0.1.0", "0.2.0"))


def test_dispatch_del_prints_nothing() -> None:
    reply = dispatch({"env": env(CNI_COMMAND="DEL"), "stdin": conf()}, {"DEL": lambda r: None})
    assert reply == {"exit_code": 0, "stdout": "", "stderr": ""}


def test_dispatch_version() -> None:
    reply = dispatch({"env": {"CNI_COMMAND": "VERSION"}, "stdin": conf("1.0.0")}, {})
    assert json.loads(reply["stdout"])["supportedVersions"][-1] == "1.1.0"


def test_dispatch_errors_are_spec_json() -> None:
    reply = dispatch({"env": env(), "stdin": conf("0.3.1", name="")}, {"ADD": _add})
    assert reply["exit_code"] != 0
    out = json.loads(reply["stdout"])
    assert out["code"] == 7 and out["cniVersion"] == "0.3.1"

    def boom(req: Request) -> Result:
        raise RuntimeError("kaput")

    reply = dispatch({"env": env(), "stdin": conf()}, {"ADD": boom})
    out = json.loads(reply["stdout"])
    assert out["code"] == errors.PLUGIN_FAILURE and "kaput" in out["details"]

    def busy(req: Request) -> Result:
        raise CNIError(errors.TRY_AGAIN_LATER, "datastore busy")

    out = json.loads(dispatch({"env": env(), "stdin": conf()}, {"ADD": busy})["stdout"])
    assert out["code"] == 11
