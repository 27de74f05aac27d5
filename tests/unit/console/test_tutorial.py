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


def test_every_walkthrough_builds_and_names_its_commands():
    from calico.tutorial import KINDS, TUTORIALS

    for name, spec in TUTORIALS.items():
        tut = Tutorial.named(name)
        assert [s.key for s in tut.steps] == [s.key for s in spec.steps]
        assert len({s.key for s in tut.steps}) == len(tut.steps), name  # keys are unique
        assert all(s.kind in KINDS and s.title and s.why for s in spec.steps)
        assert all(step.commands for step in tut.steps), name
        assert tut.steps[0].key == "node-service" and tut.steps[-1].key == "cleanup"


def test_probes_judge_each_promise_and_need_the_servers_address():
    tut = Tutorial.named("default-deny")
    i = index(tut, "one-open")  # 8080 answers, 80 times out
    answer = (0, "Connecting to 192.168.0.100\npasswd  100% |****|\n")
    timeout = (1, "Connecting to 192.168.0.100\nwget: download timed out\n")
    as_promised = FakeShell(
        [(lambda n, a: ":8080/" in a[-1], answer), (lambda n, a: True, timeout)]
    )
    assert tut.run_step(i, as_promised).ok
    both_open = FakeShell([(lambda n, a: True, answer)])
    result = tut.run_step(i, both_open)
    assert not result.ok and "NOT as promised: times out" in result.seen

    dual = Tutorial.named("two-networks")
    result = dual.run_step(index(dual, "each-own"), FakeShell([(lambda n, a: True, answer)]))
    assert not result.ok and "dual has no network1 address: run its step first" in result.seen


def test_cleanup_deletes_what_the_walkthrough_declares_even_if_gone():
    tut = Tutorial.named("policy-order")
    gone = (1, "Failed to delete 'GlobalNetworkPolicy' resource: resource does not exist")
    shell = FakeShell([(lambda n, a: a[:2] == ["calicoctl", "delete"], gone)])
    assert tut.run_step(index(tut, "cleanup"), shell).ok
    deleted = [a[3] for n, a, _ in shell.calls if a[:2] == ["calicoctl", "delete"]]
    assert deleted == ["pass-network1", "deny-web"]


def test_the_console_opens_a_walkthrough_by_name_and_t_moves_on():
    import asyncio

    from console.app import CalicoConsole
    from console.screens.tutorial import TutorialScreen

    from .fixtures import seed_state

    async def run():
        app = CalicoConsole(endpoints="http://127.0.0.1:1", follow=False, state=seed_state())
        async with app.run_test(size=(120, 32)) as pilot:
            app.switch_view("tutorial two-networks")
            await pilot.pause()
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, TutorialScreen) and screen.tutorial.name == "two-networks"
            assert len(screen.query("#steps ListItem")) == 7
            await pilot.press("t")  # wraps round to the first
            await pilot.pause()
            assert screen.tutorial.name == "isolation"
            assert len(screen.query("#steps ListItem")) == 8
            app.switch_view("tutorial nosuch")
            await pilot.pause()
            assert screen.tutorial.name == "isolation"

    asyncio.run(run())
