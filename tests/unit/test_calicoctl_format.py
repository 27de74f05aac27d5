"""calicoctl without etcd: table columns, YAML/JSON round trips, one-line errors.

`main([...])` runs in-process; `get` reads from a small in-memory stand-in for the
datastore's raw key access (kv_get / kv_list), so what is printed is exactly what the
real command prints for the same stored JSON.
"""

from __future__ import annotations

import json

import pytest
import yaml

from calico.datastore import KV
from calico.keys import key_of
from calico.resources import KINDS, load
from calicoctl import output, resource_commands, tables
from calicoctl.cli import main
from calicoctl.context import Cli, CliError
from calicoctl.inputs import load_resources

SAMPLES = {
    "BGPConfiguration": """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: false
  logSeverityScreen: Info
""",
    "BGPPeer": """
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor-calico-01
spec:
  node: calico-01
  peerIP: 10.99.0.254
  asNumber: 65000
""",
    "Profile": """
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: network1
spec:
  ingress:
  - action: Allow
    source:
      selector: has(network1)
  egress:
  - action: Allow
  labelsToApply:
    network1: ""
""",
    "IPPool": """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool1
spec:
  cidr: 10.0.0.0/16
  blockSize: 26
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
""",
    "Node": """
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: calico-01
  annotations:
    calico-rkt.io/api: unix:///run/calico/calico-01.sock
spec:
  bgp:
    ipv4Address: 10.99.0.1/24
    asNumber: 64512
""",
    "WorkloadEndpoint": """
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: calico--01-cni-0123456789abcdef-eth0
  namespace: default
  labels:
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: cni
spec:
  orchestrator: cni
  workload: 0123456789abcdef
  node: calico-01
  containerID: 0123456789abcdef
  endpoint: eth0
  interfaceName: cali0123456789a
  mac: 2a:5f:00:00:00:01
  ipNetworks: [10.0.0.2/32]
  profiles: [network1, network2]
""",
    "NetworkPolicy": """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: prod
spec:
  order: 100
  selector: role == 'web'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "8080:8090"]
""",
    "GlobalNetworkPolicy": """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: deny-db
spec:
  order: 10.5
  selector: has(db)
  types: [Ingress, Egress]
  ingress:
  - action: Deny
    source:
      notNets: [10.1.0.0/16]
  egress:
  - action: Allow
""",
}


class FakeStore:
    """The raw-key half of Datastore that `calicoctl get` uses, over a dict."""

    def __init__(self, resources):
        self.kvs = {}
        for rev, res in enumerate(resources, start=10):
            data = res.to_dict()
            data["metadata"].pop("resourceVersion", None)
            body = json.dumps(data, sort_keys=True).encode()
            self.kvs[key_of(res)] = KV(key_of(res), body, rev, rev)

    def kv_get(self, key):
        return self.kvs.get(key)

    def kv_list(self, prefix):
        found = [kv for k, kv in sorted(self.kvs.items()) if k.startswith(prefix)]
        return found, 99

    def close(self):
        pass


@pytest.fixture
def store(monkeypatch):
    """Serve every sample (plus a second profile and an endpoint elsewhere) to `get`."""
    resources = [load(yaml.safe_load(text)) for text in SAMPLES.values()]
    resources.append(load(yaml.safe_load(SAMPLES["Profile"].replace("network1", "network2"))))
    other = yaml.safe_load(SAMPLES["WorkloadEndpoint"])
    other["metadata"].update(name="calico--02-cni-fedcba-eth0", namespace="prod")
    other["spec"].update(node="calico-02", workload="fedcba", ipNetworks=["10.0.1.7/32"])
    resources.append(load(other))
    fake = FakeStore(resources)
    monkeypatch.setattr(Cli, "datastore", lambda self: fake)
    monkeypatch.setattr(Cli, "reader", lambda self: fake)  # get reads through the gateway
    monkeypatch.setattr(resource_commands, "list_prefix", lambda ds, prefix: ds.kv_list(prefix))
    return fake


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["get", "profiles"], "NAME\nnetwork1\nnetwork2\n"),
        (
            ["get", "profiles", "-o", "wide"],
            "NAME       LABELS\nnetwork1   network1=\nnetwork2   network2=\n",
        ),
        (["get", "ippool"], "NAME    CIDR          SELECTOR\npool1   10.0.0.0/16   all()\n"),
        (
            ["get", "ippools", "-o", "wide"],
            "NAME    CIDR          NAT    IPIPMODE   VXLANMODE   DISABLED   SELECTOR\n"
            "pool1   10.0.0.0/16   true   Always     Never       false      all()\n",
        ),
        (["get", "nodes"], "NAME\ncalico-01\n"),
        (
            ["get", "node", "-o", "wide"],
            "NAME        ASN     IPV4           IPV6\ncalico-01   64512   10.99.0.1/24\n",
        ),
        (
            ["get", "wep"],
            "WORKLOAD           NODE        NETWORKS      INTERFACE\n"
            "0123456789abcdef   calico-01   10.0.0.2/32   cali0123456789a\n",
        ),
        (
            ["get", "workloadendpoints", "-o", "wide"],
            "NAME                                   WORKLOAD           NODE        NETWORKS      "
            "INTERFACE         PROFILES\n"
            "calico--01-cni-0123456789abcdef-eth0   0123456789abcdef   calico-01   10.0.0.2/32   "
            "cali0123456789a   network1,network2\n",
        ),
        (
            ["get", "WorkloadEndpoint", "-A"],
            "NAMESPACE   WORKLOAD           NODE        NETWORKS      INTERFACE\n"
            "default     0123456789abcdef   calico-01   10.0.0.2/32   cali0123456789a\n"
            "prod        fedcba             calico-02   10.0.1.7/32   cali0123456789a\n",
        ),
        (["get", "networkpolicy"], "NAME\n"),  # none in namespace default
        (["get", "netpol", "-n", "prod"], "NAME\nallow-web\n"),
        (
            ["get", "networkpolicies", "--all-namespaces"],
            "NAMESPACE   NAME\nprod        allow-web\n",
        ),
        (
            ["get", "np", "-n", "prod", "-o", "wide"],
            "NAME        ORDER   SELECTOR\nallow-web   100     role == 'web'\n",
        ),
        (["get", "GlobalNetworkPolicies"], "NAME\ndeny-db\n"),
        (
            ["get", "gnp", "-o", "wide"],
            "NAME      ORDER   SELECTOR\ndeny-db   10.5    has(db)\n",
        ),
    ],
)
def test_get_tables(store, capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    assert out == expected


def test_every_kind_has_ps_and_wide_columns():
    for cls in KINDS:
        ps, wide = tables.headers(cls.KIND), tables.headers(cls.KIND, wide=True)
        assert ps and wide and all(h == h.upper() for h in ps + wide)
        assert set(ps) <= set(wide) or cls.KIND == "IPPool"


def test_table_rows_from_typed_resource_and_wire_dict_agree():
    for text in SAMPLES.values():
        res = load(yaml.safe_load(text))
        for wide in (False, True):
            assert tables.row(res, wide) == tables.row(res.to_dict(), wide)


def test_node_without_asn_shows_inherited_default():
    node = load(yaml.safe_load(SAMPLES["Node"].replace("    asNumber: 64512\n", "")))
    assert tables.row(node, wide=True)[1] == "(64512)"


def test_render_aligns_like_tabwriter():
    assert tables.render([["A", "BB"], ["long-name", "x"]]) == "A           BB\nlong-name   x\n"
    assert tables.render([["NAME"]]) == "NAME\n"


def test_get_by_name_prints_the_resource_and_a_listing_prints_a_list(store, capsys):
    code, out, _ = run(capsys, "get", "profile", "network1", "-o", "yaml")
    doc = yaml.safe_load(out)
    assert code == 0 and doc["kind"] == "Profile" and doc["metadata"]["resourceVersion"]
    code, out, _ = run(capsys, "get", "profiles", "-o", "json")
    doc = json.loads(out)
    assert doc["kind"] == "ProfileList"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["network1", "network2"]
    assert doc["metadata"] == {"resourceVersion": "99"}


def test_get_unknown_name_is_one_line(store, capsys):
    code, out, err = run(capsys, "get", "profile", "nope")
    assert code == 1 and out == ""
    assert err == "Failed to get 'Profile' resource: [resource does not exist: Profile(nope)]\n"


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", list(SAMPLES))
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_through_output_formats(kind, fmt):
    (res,) = load_resources(SAMPLES[kind], "sample", None)
    text = output.dump(res.to_dict(), fmt)
    (again,) = load_resources(text, "output", None)
    assert again == res
    assert output.dump(again.to_dict(), fmt) == text


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_loads_back_as_the_same_resources(store, capsys, fmt):
    for cls in KINDS:
        code, out, err = run(capsys, "get", cls.PLURAL, "-A", "-o", fmt)
        assert code == 0, err
        loaded = load_resources(out, "get", None)
        stored = [
            load(json.loads(kv.value))
            for _, kv in sorted(store.kvs.items())
            if kv.key.split("/")[5] == cls.PLURAL
        ]
        assert stored and [r.to_dict()["spec"] for r in loaded] == [
            r.to_dict()["spec"] for r in stored
        ]
        assert all(r.metadata.resource_version for r in loaded)


def test_list_kinds_and_multi_document_files_unwrap():
    profile, pool = SAMPLES["Profile"], SAMPLES["IPPool"]
    as_list = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "List",
        "items": [yaml.safe_load(profile), yaml.safe_load(pool)],
    }
    for text in (profile + "---\n" + pool, yaml.safe_dump(as_list), json.dumps(as_list)):
        assert [r.KIND for r in load_resources(text, "f", None)] == ["Profile", "IPPool"]


def test_namespace_flag_fills_in_and_must_agree():
    doc = yaml.safe_load(SAMPLES["WorkloadEndpoint"])
    del doc["metadata"]["namespace"]
    (wep,) = load_resources(json.dumps(doc), "f", "prod")
    assert wep.metadata.namespace == "prod"
    (profile,) = load_resources(SAMPLES["Profile"], "f", "prod")  # not namespaced: untouched
    assert profile.metadata.namespace is None
    with pytest.raises(CliError, match="does not match --namespace"):
        load_resources(SAMPLES["WorkloadEndpoint"], "f", "prod")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            "kind: Profile\nmetadata: {name: a\n",
            "Failed to execute command: {path} is not valid YAML/JSON at line 3, column 1:",
        ),
        (
            "apiVersion: projectcalico.org/v3\nkind: Gadget\nmetadata: {name: a}\n",
            "Failed to execute command: unknown resource kind 'Gadget'",
        ),
        (
            SAMPLES["Profile"].replace("action: Allow\n    source", "action: Alow\n    source"),
            "Failed to execute command: error with field spec.ingress[0].action: unknown action "
            "'Alow' (one of Allow, Deny, Log, Pass) [{path}, document 1: Profile network1]",
        ),
        (
            SAMPLES["IPPool"].replace("natOutgoing", "natOutgoin"),
            "Failed to execute command: error with field spec.natOutgoin: unknown field",
        ),
        (
            SAMPLES["IPPool"].replace("10.0.0.0/16", "10.0.0.1/16"),
            "Failed to execute command: error with field spec.cidr: '10.0.0.1/16' has host bits set",
        ),
        ("# nothing here\n", "Failed to execute command: no resources specified in {path}"),
        ('{"kind": "Profile", ', "Failed to execute command: {path} is not valid YAML/JSON"),
        (
            "apiVersion: projectcalico.org/v3\nkind: 5\nmetadata: {name: a}\n",
            "Failed to execute command: kind must be a string, not int [{path}, document 1",
        ),
    ],
)
@pytest.mark.parametrize("command", ["create", "apply", "replace", "delete"])
def test_bad_input_files_fail_in_one_line(
    tmp_path, capsys, monkeypatch, command, content, expected
):
    monkeypatch.setattr(Cli, "datastore", lambda self: pytest.fail("no etcd needed"))
    monkeypatch.setattr(Cli, "reader", lambda self: pytest.fail("no etcd needed"))
    path = tmp_path / "in.yaml"
    path.write_text(content)
    for namespace in ([], ["-n", "prod"]):  # -n reads the kind first, to place the resource
        code, out, err = run(capsys, command, "-f", str(path), *namespace)
        assert code == 1 and out == ""
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(expected.format(path=path)), err


def test_missing_file_and_usage_errors_are_one_line(capsys):
    code, _, err = run(capsys, "create", "-f", "/nonexistent/x.yaml")
    assert code == 1
    assert (
        err
        == "Failed to execute command: cannot read /nonexistent/x.yaml: No such file or directory\n"
    )
    code, _, err = run(capsys, "get", "profiles", "-o", "xml")
    assert code == 1 and err.count("\n") == 1 and "invalid choice: 'xml'" in err
    code, _, err = run(capsys, "get", "gadgets")
    assert code == 1 and err.startswith(
        "Failed to execute command: unknown resource kind 'gadgets'"
    )
    code, _, err = run(capsys, "delete", "profile")
    assert code == 1 and err.count("\n") == 1


def test_stdin_is_read_with_dash(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("kind: Profile\n"))
    monkeypatch.setattr(Cli, "datastore", lambda self: pytest.fail("no etcd needed"))
    monkeypatch.setattr(Cli, "reader", lambda self: pytest.fail("no etcd needed"))
    code, _, err = run(capsys, "apply", "-f", "-")
    assert (
        code == 1 and "error with field apiVersion" in err and "[stdin, document 1: Profile]" in err
    )


def test_unexpected_errors_hide_the_traceback_unless_debug(capsys, monkeypatch):
    def boom(cli):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(resource_commands, "cmd_version", boom)
    code, _, err = run(capsys, "version")
    assert (
        code == 1
        and err == "calicoctl: unexpected error: RuntimeError: kaboom (rerun with --debug)\n"
    )
    code, _, err = run(capsys, "--debug", "version")
    assert code == 1 and "Traceback" in err and err.endswith("(rerun with --debug)\n")


def test_help_exits_zero(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "get" in out and "ipam" in out


TRICKY_STRINGS = [
    "", " ", "yes", "No", "on", "OFF", "y", "n", "true", "False", "null", "Null", "~",
    "123", "-1", "1.5", "1e3", "1_000", "0x1f", "0o17", "017", "1:20", "2024-05-01", ".inf",
    "-.inf", ".nan", "<<", "=", " lead", "trail ", "a: b", "a:", "a #b", "#x", "-x", "- x",
    "?x", ":x", "[a]", "{a}", "*a", "&a", "!a", "|", ">", "'", '"', "%x", "@x", "`x",
    "a\nb", "tab\there", "é", "\x00", "\u2028", "has(network1)", "role == 'web'", "all()",
    "10.0.0.0/16", "2a:5f:00:00:00:01", "http://127.0.0.1:2379", "projectcalico.org/namespace",
    "calico--01-cni-" + "ab" * 32 + "-eth0", "8080:8090", "a,b", "x!", "(", "/",
]  # fmt: skip


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_yaml_strings_read_back_as_written(text):
    doc = {text: text, "list": [text, {text: [text]}], "nested": {"k": text}}
    assert yaml.safe_load(output.to_yaml(doc)) == doc


def test_yaml_matches_pyyaml_on_resources():
    values = [None, True, False, 0, -7, 1.5, 100.0, 1e20, 2.5e-7, float("inf"), [], {}]
    doc = {"values": values, "empty": {}, "none": [], "deep": [[1, [2]], [{"a": {}}]]}
    assert yaml.safe_load(output.to_yaml(doc)) == doc
    for kind, text in SAMPLES.items():
        res = load(yaml.safe_load(text)).to_dict()
        ours = output.to_yaml(res)
        assert yaml.safe_load(ours) == res
        if "Policy" not in kind:  # same text as PyYAML, but for "" vs '' (policies: quoting)
            theirs = yaml.safe_dump(res, sort_keys=True, default_flow_style=False)
            assert ours == theirs.replace("''", '""')
