"""The walkthrough's checks judge real outputs right (a fake shell plays the cluster)."""

from calico.tutorial import Tutorial


class FakeShell:
    def __init__(self, answers):
        self.answers = answers  # list of (predicate on (node, argv), (rc, out))
        self.calls = []

    def __call__(self, node, argv, input=None, timeout=30.0):
        self.calls.append((node, argv, input))
        for pred, answer in self.answers:
            if pred(node, argv):
                return answer
        return 0, ""


def index(tut, key):
    return [s.key for s in tut.steps].index(key)


def test_node_service_step_needs_node_running_on_every_node():
    tut = Tutorial()
    listing = "UUID\tAPP\tIMAGE NAME\tSTATE\nb52bba11\tnode\tcalico/node\trunning\n"
    ok = FakeShell([(lambda n, a: a[:2] == ["rkt", "list"], (0, listing))])
    assert tut.run_step(index(tut, "node-service"), ok).ok
    only_one = FakeShell(
        [(lambda n, a: n == "calico-01", (0, listing)), (lambda n, a: True, (0, "UUID\n"))]
    )
    result = tut.run_step(index(tut, "node-service"), only_one)
    assert not result.ok and "[calico-02]" in result.seen


def test_networks_step_writes_the_files_with_calico_types():
    tut = Tutorial()
    shell = FakeShell(
        [(lambda n, a: a[0] == "ls", (0, "10-calico-network1.conf\n10-calico-network2.conf\n"))]
    )
    assert tut.run_step(index(tut, "networks"), shell).ok
    written = [inp for _, argv, inp in shell.calls if inp]
    assert len(written) == 4 and all('"type": "calico-ipam"' in w for w in written)


def test_wget_steps_tell_download_from_timeout():
    tut = Tutorial()
    good = FakeShell(
        [
            (
                lambda n, a: True,
                (
                    0,
                    "Connecting to 192.168.0.100 (192.168.0.100:80)\npasswd  100% |****|  334  0:00:00 ETA\n",
                ),
            )
        ]
    )
    timeout = FakeShell(
        [
            (
                lambda n, a: True,
                (1, "Connecting to 192.168.0.100 (192.168.0.100:80)\nwget: download timed out\n"),
            )
        ]
    )
    assert tut.run_step(index(tut, "wget-same-remote"), good).ok
    assert not tut.run_step(index(tut, "wget-same-remote"), timeout).ok
    assert tut.run_step(index(tut, "wget-other-network"), timeout).ok
    assert not tut.run_step(index(tut, "wget-other-network"), good).ok


def test_a_crashing_step_fails_with_the_reason():
    def broken(node, argv, input=None, timeout=30.0):
        raise OSError("no such node")

    tut = Tutorial()
    result = tut.run_step(0, broken)
    assert not result.ok and "no such node" in result.seen
    tut.reset()
    assert all(s.result is None for s in tut.steps)
