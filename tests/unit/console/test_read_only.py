"""Read-only: changing keys are absent from the footer, help and palette, and pressing one
says why nothing happened; with changes allowed the same keys are there and do their work."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Footer

from console.access import CHANGING_ACTIONS, REFUSE_ACTION, action_allowed, changing, refusal
from console.app import CalicoConsole
from console.screens.help import key_help

from .fixtures import seed_state

SIZE = (120, 32)


def app(read_only: bool) -> CalicoConsole:
    return CalicoConsole(
        endpoints="http://127.0.0.1:1",
        cluster_name="calilab",
        follow=False,
        state=seed_state(),
        read_only=read_only,
    )


def test_decision_is_a_pair_exactly_one_of_which_is_live():
    for web in (False, True):
        for action in CHANGING_ACTIONS:
            assert action_allowed(action, read_only=True, web=web) is False
            assert action_allowed(REFUSE_ACTION, (action,), read_only=True, web=web) is True
            for_here = action_allowed(action, read_only=False, web=web)
            assert for_here is not action_allowed(
                REFUSE_ACTION, (action,), read_only=False, web=web
            )
    assert action_allowed("edit", read_only=False, web=False) is True
    assert action_allowed("delete", read_only=False, web=True) is True
    assert action_allowed("describe", read_only=True) is True
    assert action_allowed("probe", read_only=True) is True  # probe pods are removed again


def test_editing_is_off_in_a_browser_even_with_changes_allowed():
    assert action_allowed("edit", read_only=False, web=True) is False
    assert action_allowed(REFUSE_ACTION, ("edit",), read_only=False, web=True) is True
    said = refusal("edit", read_only=False, web=True)
    assert "in a browser" in said and "$EDITOR" in said and "read-only" not in said


def test_refusal_names_the_action_and_the_way_out():
    web = refusal("edit", read_only=True, web=True)
    assert "editing a resource" in web and "--allow-changes" in web
    assert "--read-only" in refusal("delete", read_only=True, web=False)


def test_changing_refuses_an_action_it_does_not_know():
    from textual.binding import Binding

    with pytest.raises(ValueError, match="CHANGING_ACTIONS"):
        changing(Binding("x", "describe", "describe"))


def footer_actions(pilot) -> set[str]:
    screen = pilot.app.screen
    return {
        active.binding.action for active in screen.active_bindings.values() if active.binding.show
    }


@pytest.mark.parametrize("key,action", [("e", "edit"), ("ctrl+d", "delete"), ("n", "launch")])
def test_read_only_hides_the_key_and_pressing_it_says_why(key, action):
    asyncio.run(_read_only_key(key, action))


async def _read_only_key(key: str, action: str) -> None:
    async with app(read_only=True).run_test(size=SIZE) as pilot:
        pilot.app.switch_view("profiles")
        await pilot.pause()
        shown = footer_actions(pilot)
        assert action not in shown and "describe" in shown
        assert pilot.app.screen.query_one(Footer)  # the footer is there, just without it
        helped = {entry.action for entry in key_help(pilot.app.screen)}
        assert action not in helped and REFUSE_ACTION not in helped
        palette = [c.help for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert not any(f"key {key}" == h for h in palette)
        await pilot.press(key)
        await pilot.pause()
        notes = [n.message for n in pilot.app._notifications]
        assert any(CHANGING_ACTIONS[action] in m and "--read-only" in m for m in notes), notes
        assert len(pilot.app.screen_stack) == 1  # no confirm dialog, no launch form


def test_changes_allowed_shows_the_keys_and_delete_asks():
    asyncio.run(_changes_allowed())


async def _changes_allowed() -> None:
    async with app(read_only=False).run_test(size=SIZE) as pilot:
        pilot.app.switch_view("profiles")
        await pilot.pause()
        assert {"edit", "delete", "launch"} <= footer_actions(pilot)
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert type(pilot.app.screen).__name__ == "ConfirmScreen"
        assert not any("read-only" in n.message for n in pilot.app._notifications)


def test_read_only_tutorial_can_be_read_not_run():
    asyncio.run(_tutorial_read_only())


async def _tutorial_read_only() -> None:
    async with app(read_only=True).run_test(size=SIZE) as pilot:
        pilot.app.switch_view("tutorial")
        await pilot.pause()
        assert not {"run_step", "run_all"} & footer_actions(pilot)
        await pilot.press("a")
        await pilot.pause()
        screen = pilot.app.screen
        assert screen.running is None
        assert all(step.result is None for step in screen.tutorial.steps)
        assert any("running the tutorial" in n.message for n in pilot.app._notifications)


def test_snapshot_read_only_profiles_after_pressing_e(snap_compare):
    """The footer without edit, delete or new pod; the notice the e key gave instead."""

    async def go(pilot):
        pilot.app.switch_view("profiles")
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()

    assert snap_compare(app(read_only=True), terminal_size=SIZE, run_before=go)
