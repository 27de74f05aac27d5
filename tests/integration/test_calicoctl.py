"""calicoctl against a real etcd: round trips, skip flags, deletes, and failures.

Most cases call `main(argv)` in-process (fast); the installed `calicoctl` script runs as a
subprocess where the process boundary matters (exit status, stderr, start-up, timeouts).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from calico.keys import resource_key
from calicoctl.cli import main
from lab.etcd import free_port
from tests.unit.test_calicoctl_format import SAMPLES

pytestmark = pytest.mark.etcd

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


@pytest.fixture
def ctl(datastore, etcd_server, monkeypatch, capsys):
    """Run calicoctl in-process against the test etcd: ctl(*argv, stdin=None) -> (code, out, err)."""
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd_server.endpoints)

    def run(*argv: str, stdin: str | None = None):
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def without_version(text: str) -> dict:
    doc = yaml.safe_load(text)
    doc["metadata"].pop("resourceVersion")
    return doc


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_round_trip_every_kind(ctl, tmp_path, kind):
    res = yaml.safe_load(SAMPLES[kind])
    name, ns = res["metadata"]["name"], res["metadata"].get("namespace")
    ns_args = ["-n", ns] if ns else []
    assert ctl("create", "-f", write(tmp_path, "in.yaml", SAMPLES[kind])) == (
        0,
        f"Successfully created 1 '{kind}' resource(s)\n",
        "",
    )
    code, first, err = ctl("get", kind, name, *ns_args, "-o", "yaml")
    assert code == 0, err
    assert ctl("apply", "-f", "-", stdin=first)[:2] == (
        0,
        f"Successfully applied 1 '{kind}' resource(s)\n",
    )
    code, second, _ = ctl("get", kind.lower(), name, *ns_args, "-o", "yaml")
    assert without_version(second) == without_version(first)
    assert (
        yaml.safe_load(second)["metadata"]["resourceVersion"]
        != yaml.safe_load(first)["metadata"]["resourceVersion"]
    )
    # what was written is what the file said, plus identity the datastore adds
    stored = without_version(second)
    assert stored["spec"] == yaml.safe_load(SAMPLES[kind])["spec"]
    assert stored["metadata"]["uid"] and stored["metadata"]["creationTimestamp"]


def test_get_profiles_from_the_installed_script(datastore, etcd_server, tmp_path):
    profiles = SAMPLES["Profile"] + "---\n" + SAMPLES["Profile"].replace("network1", "network2")
    env = {"ETCD_ENDPOINTS": etcd_server.endpoints, "PATH": "/usr/bin:/bin"}
    create = subprocess.run(
        [CALICOCTL, "create", "-f", write(tmp_path, "p.yaml", profiles)],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (create.returncode, create.stdout, create.stderr) == (
        0,
        "Successfully created 2 'Profile' resource(s)\n",
        "",
    )
    start = time.monotonic()
    get = subprocess.run(
        [CALICOCTL, "get", "profiles"], env=env, capture_output=True, text=True, timeout=30
    )
    elapsed = time.monotonic() - start
    assert (get.returncode, get.stdout, get.stderr) == (0, "NAME\nnetwork1\nnetwork2\n", "")
    assert elapsed < 3, f"calicoctl get profiles took {elapsed:.2f}s"
    wide = subprocess.run(
        [CALICOCTL, "get", "profiles", "-o", "wide"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert wide.stdout == "NAME       LABELS\nnetwork1   network1=\nnetwork2   network2=\n"


def test_skip_exists_and_skip_not_exists(ctl, tmp_path, datastore):
    path = write(tmp_path, "p.yaml", SAMPLES["Profile"])
    assert ctl("create", "-f", path)[0] == 0
    code, out, err = ctl("create", "-f", path)
    assert (code, out) == (1, "")
    assert (
        err == "Failed to create 'Profile' resource: [resource already exists: Profile(network1)]\n"
    )
    assert ctl("create", "-f", path, "--skip-exists") == (
        0,
        "Successfully created 1 'Profile' resource(s)\n",
        "",
    )
    assert ctl("delete", "-f", path)[0] == 0
    code, _, err = ctl("replace", "-f", path)
    assert code == 1
    assert (
        err
        == "Failed to replace 'Profile' resource: [resource does not exist: Profile(network1)]\n"
    )
    assert ctl("replace", "-f", path, "--skip-not-exists")[0] == 0
    assert ctl("delete", "-f", path, "--skip-not-exists")[0] == 0
    assert ctl("delete", "profile", "network1", "--skip-not-exists")[0] == 0
    assert datastore.kv_get(resource_key("Profile", "network1")) is None


def test_delete_removes_the_key(ctl, tmp_path, datastore):
    assert ctl("create", "-f", write(tmp_path, "w.yaml", SAMPLES["WorkloadEndpoint"]))[0] == 0
    assert ctl("create", "-f", write(tmp_path, "p.yaml", SAMPLES["Profile"]))[0] == 0
    wep_key = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/" + (
        "calico--01-cni-0123456789abcdef-eth0"
    )
    profile_key = "/calico/resources/v3/projectcalico.org/profiles/network1"
    assert datastore.kv_get(wep_key) and datastore.kv_get(profile_key)
    assert ctl("delete", "Profiles", "network1") == (
        0,
        "Successfully deleted 1 'Profile' resource(s)\n",
        "",
    )
    assert datastore.kv_get(profile_key) is None
    # namespaced: -n picks the namespace; the wrong one does not find it
    code, _, err = ctl("delete", "wep", "calico--01-cni-0123456789abcdef-eth0", "-n", "prod")
    assert code == 1 and "resource does not exist: WorkloadEndpoint(prod/" in err
    assert ctl("delete", "wep", "calico--01-cni-0123456789abcdef-eth0")[0] == 0
    assert datastore.kv_get(wep_key) is None


def test_unknown_names_fail_in_one_line(ctl):
    assert ctl("get", "profile", "nope") == (
        1,
        "",
        "Failed to get 'Profile' resource: [resource does not exist: Profile(nope)]\n",
    )
    assert ctl("delete", "ippool", "nope") == (
        1,
        "",
        "Failed to delete 'IPPool' resource: [resource does not exist: IPPool(nope)]\n",
    )


def test_stale_resource_version_is_a_conflict(ctl, tmp_path):
    assert ctl("create", "-f", write(tmp_path, "p.yaml", SAMPLES["Profile"]))[0] == 0
    _, old, _ = ctl("get", "profile", "network1", "-o", "yaml")
    assert ctl("apply", "-f", "-", stdin=old)[0] == 0  # moves the version on
    for command in ("apply", "replace"):
        code, out, err = ctl(command, "-f", "-", stdin=old)
        assert (code, out) == (1, "")
        assert err.startswith(
            f"Failed to {command} 'Profile' resource: [update conflict: Profile(network1)"
        )


def test_apply_of_a_plain_file_keeps_identity(ctl, tmp_path):
    path = write(tmp_path, "p.yaml", SAMPLES["Profile"])
    assert ctl("apply", "-f", path)[0] == 0
    before = yaml.safe_load(ctl("get", "profile", "network1", "-o", "yaml")[1])["metadata"]
    assert ctl("apply", "-f", path)[0] == 0
    after = yaml.safe_load(ctl("get", "profile", "network1", "-o", "yaml")[1])["metadata"]
    assert after["uid"] == before["uid"]
    assert after["creationTimestamp"] == before["creationTimestamp"]


def test_partial_failure_reports_both(ctl, tmp_path):
    assert ctl("create", "-f", write(tmp_path, "p.yaml", SAMPLES["Profile"]))[0] == 0
    both = SAMPLES["Profile"] + "---\n" + SAMPLES["IPPool"]
    code, out, err = ctl("create", "-f", write(tmp_path, "both.yaml", both))
    assert code == 1
    assert out == "Successfully created 1 'IPPool' resource(s)\n"
    assert (
        err == "Failed to create 'Profile' resource: [resource already exists: Profile(network1)]\n"
    )


def test_listing_yaml_is_a_kind_list_that_applies_back(ctl, tmp_path):
    profiles = SAMPLES["Profile"] + "---\n" + SAMPLES["Profile"].replace("network1", "network2")
    assert ctl("create", "-f", write(tmp_path, "p.yaml", profiles))[0] == 0
    code, listing, _ = ctl("get", "profiles", "-o", "yaml")
    doc = yaml.safe_load(listing)
    assert doc["kind"] == "ProfileList" and len(doc["items"]) == 2
    assert (
        ctl("apply", "-f", "-", stdin=listing)[1]
        == "Successfully applied 2 'Profile' resource(s)\n"
    )


def test_etcd_unreachable_is_one_line_and_quick(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    for argv in (["get", "profiles"], ["delete", "profile", "x"]):
        start = time.monotonic()
        proc = subprocess.run(
            [CALICOCTL, *argv, "--etcd-endpoints", closed],
            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        elapsed = time.monotonic() - start
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith(f"etcd unavailable at {closed}: ")
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert elapsed < 6, f"{argv} took {elapsed:.1f}s to give up"
    create = subprocess.run(
        [CALICOCTL, "create", "-f", write(tmp_path, "p.yaml", SAMPLES["Profile"])],
        env={"PATH": "/usr/bin:/bin", "ETCD_ENDPOINTS": closed},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert create.returncode == 1 and create.stderr.startswith(f"etcd unavailable at {closed}: ")


def test_config_file_names_the_endpoints(datastore, etcd_server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)
    cfg = write(
        tmp_path,
        "calicoctl.cfg",
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n"
        f"  datastoreType: etcdv3\n  etcdEndpoints: {etcd_server.endpoints}\n",
    )
    assert main(["get", "profiles", "-c", cfg]) == 0
    assert capsys.readouterr().out == "NAME\n"
    assert main(["--config", cfg, "version"]) == 0
    assert "Cluster Version:   etcd v3." in capsys.readouterr().out


def test_listing_reads_in_pages_at_one_revision(ctl, tmp_path, datastore):
    names = [f"net{i}" for i in range(7)]
    docs = "---\n".join(SAMPLES["Profile"].replace("network1", n) for n in names)
    assert ctl("create", "-f", write(tmp_path, "p.yaml", docs))[0] == 0
    datastore.kv_put("/calico/resources/v3/projectcalico.org/profilesX", "not a profile")
    # pages of 3: three range reads, one revision, nothing outside the prefix
    kvs, revision = datastore.kv_list("/calico/resources/v3/projectcalico.org/profiles/", page=3)
    assert [kv.key.rsplit("/", 1)[1] for kv in kvs] == names
    assert revision == datastore.revision()
    assert ctl("get", "profiles")[1] == "NAME\n" + "".join(f"{n}\n" for n in names)
