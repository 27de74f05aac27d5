"""CNI results of every version, plugin errors, conflists, CNI_PATH; no root needed."""

from __future__ import annotations

import json
import os
import sys

import pytest

from rkt import cni


def test_result_010():
    r = cni.parse_result(
        {"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/32", "gateway": "169.254.1.1"}}
    )
    assert (r.ip4, r.ip4_cidr, r.gateway4) == ("10.0.0.2", "10.0.0.2/32", "169.254.1.1")


def test_result_020_with_ip6():
    r = cni.parse_result(
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.3/24"}, "ip6": {"ip": "fd00::3/64"}}
    )
    assert (r.ip4, r.ip6) == ("10.0.0.3", "fd00::3")


def test_result_031_prefers_the_sandbox_interface():
    res = {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "veth1", "mac": "ee:ee:ee:ee:ee:ee"},
                       {"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"version": "4", "address": "10.0.0.1/32", "interface": 0},
                {"version": "4", "address": "10.0.0.4/24", "interface": 1, "gateway": "10.0.0.1"}],
    }  # fmt: skip
    r = cni.parse_result(res)
    assert (r.ip4, r.gateway4) == ("10.0.0.4", "10.0.0.1")


def test_result_100_without_version_field():
    r = cni.parse_result(
        {"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64"}, {"address": "10.0.0.5/24"}]}
    )
    assert (r.ip4, r.ip6) == ("10.0.0.5", "fd00::5")


def test_result_without_ip():
    assert cni.parse_result({"cniVersion": "0.4.0", "ips": []}).ip4 == ""


def run(stdout=b"", stderr=b"", rc=1):
    return cni.PluginRun(rc, stdout, stderr)


def test_error_message_uses_msg_and_details_on_one_line():
    out = json.dumps({"cniVersion": "0.1.0", "code": 11, "msg": "failed to allocate",
                      "details": "pool\nexhausted"}).encode()  # fmt: skip
    assert (
        cni.error_message(run(out), "calico-ipam")
        == "plugin calico-ipam: failed to allocate: pool exhausted"
    )
    assert cni.error_message(run(b"", b"panic: boom\n"), "x") == "plugin x: panic: boom"
    assert cni.error_message(run(rc=2), "x") == "plugin x: exited with status 2"


def test_conflist_expansion():
    confs = cni.plugin_confs(
        {"name": "n", "cniVersion": "0.4.0", "plugins": [{"type": "a"}, {"type": "b", "k": 1}]}
    )
    assert confs == [{"type": "a", "name": "n", "cniVersion": "0.4.0"},
                     {"type": "b", "k": 1, "name": "n", "cniVersion": "0.4.0"}]  # fmt: skip
    single = {"name": "n", "type": "ptp"}
    assert cni.plugin_confs(single) == [single]


def test_default_cni_path(monkeypatch):
    monkeypatch.delenv("CNI_PATH", raising=False)
    assert cni.default_cni_path() == f"{os.path.dirname(sys.executable)}:/usr/lib/cni"
    monkeypatch.setenv("CNI_PATH", "/x:/y")
    assert cni.default_cni_path() == "/x:/y"


def fake_plugin(d, name, body):
    p = d / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def test_add_and_delete_with_fake_plugins(tmp_path):
    """A conflist chains prevResult on ADD and runs in reverse on DEL; env is the same both times."""
    log = tmp_path / "log"
    fake_plugin(tmp_path, "first", f'''cat > /dev/null
echo "$CNI_COMMAND first $CNI_IFNAME $CNI_ARGS $CNI_PATH" >> {log}
echo '{{"cniVersion":"0.4.0","ips":[{{"version":"4","address":"10.9.0.2/24"}}]}}'
''')  # fmt: skip
    fake_plugin(tmp_path, "second", f'''in=$(cat)
case "$in" in *prevResult*) p=prev;; *) p=noprev;; esac
echo "$CNI_COMMAND second $p" >> {log}
echo "$in" | sed 's/.*"prevResult": //; s/}}$//'
''')  # fmt: skip
    conf = {"name": "n", "cniVersion": "0.4.0", "plugins": [{"type": "first"}, {"type": "second"}]}
    inv = cni.Invocation("cid", "", "eth0", "IP=10.9.0.2", str(tmp_path))
    result = cni.add(conf, inv)
    assert cni.parse_result(result).ip4 == "10.9.0.2"
    cni.delete(conf, inv, result)
    assert log.read_text().splitlines() == [
        f"ADD first eth0 IP=10.9.0.2 {tmp_path}",
        "ADD second prev",
        "DEL second prev",
        f"DEL first eth0 IP=10.9.0.2 {tmp_path}",
    ]


def test_failed_plugin_raises_one_line(tmp_path):
    fake_plugin(
        tmp_path,
        "bad",
        """cat >/dev/null
echo '{"cniVersion":"0.1.0","code":7,"msg":"no such network","details":"etcd says no"}'
exit 1
""",
    )
    with pytest.raises(cni.PluginFailed, match="plugin bad: no such network: etcd says no"):
        cni.add({"name": "n", "type": "bad"}, cni.Invocation("c", "", "eth0", "", str(tmp_path)))


def test_missing_plugin(tmp_path):
    with pytest.raises(cni.PluginFailed, match="failed to find plugin 'nope'"):
        cni.add({"name": "n", "type": "nope"}, cni.Invocation("c", "", "eth0", "", str(tmp_path)))


def test_meanwhile_runs_once_while_the_first_plugin_runs(tmp_path):
    """rkt run's record and supervisor fork happen while a plugin works: once per network
    (the first plugin of a conflist), after the plugin has its config, before its answer."""
    log = tmp_path / "log"
    for name in ("first", "second"):
        fake_plugin(tmp_path, name, f'''cat > /dev/null
sleep 0.2; echo "{name} answered" >> {log}
echo '{{"cniVersion":"0.4.0","ips":[{{"version":"4","address":"10.9.0.2/24"}}]}}'
''')  # fmt: skip
    conf = {"name": "n", "cniVersion": "0.4.0", "plugins": [{"type": "first"}, {"type": "second"}]}
    inv = cni.Invocation("cid", "", "eth0", "", str(tmp_path))
    seen = []

    def meanwhile():
        seen.append(log.read_text() if log.exists() else "")

    cni.add(conf, inv, meanwhile=meanwhile)
    assert seen == [""]  # once, before the first plugin answered
    assert log.read_text().splitlines() == ["first answered", "second answered"]


def test_a_failing_meanwhile_still_reaps_the_plugin(tmp_path):
    pidfile = tmp_path / "pid"
    fake_plugin(tmp_path, "slow", f'echo $$ > {pidfile}; cat > /dev/null; sleep 0.2; echo "{{}}"')

    def meanwhile():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        cni.add({"name": "n", "type": "slow"}, cni.Invocation("c", "", "eth0", "", str(tmp_path)),
                meanwhile=meanwhile)  # fmt: skip
    pid = int(pidfile.read_text())
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: not running, not a zombie
