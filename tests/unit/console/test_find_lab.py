"""The console opens the lab `calico-lab` would pick ($CALICO_LAB, else calilab) when test
labs run beside it, not whichever `calico-lab list` happens to print first."""

from __future__ import annotations

import subprocess

import console.cli as app_module


def fake_calico_lab(labs: dict[str, str]):
    def run(argv, **kwargs):
        if argv[1] == "list":
            return subprocess.CompletedProcess(argv, 0, " ".join(labs) + "\n", "")
        name = argv[argv.index("--name") + 1]
        return subprocess.CompletedProcess(argv, 0, f"export ETCD_ENDPOINTS={labs[name]}\n", "")

    return run


def test_the_default_lab_wins_over_a_test_lab_listed_first(monkeypatch):
    labs = {"ct1d92": "http://127.0.0.1:1111", "calilab": "http://127.0.0.1:2222"}
    monkeypatch.setattr(app_module.subprocess, "run", fake_calico_lab(labs))
    monkeypatch.delenv("CALICO_LAB", raising=False)
    assert app_module.find_lab_endpoints() == ("calilab", "http://127.0.0.1:2222")


def test_calico_lab_names_the_lab(monkeypatch):
    labs = {"ct1d92": "http://127.0.0.1:1111", "calilab": "http://127.0.0.1:2222",
            "mine": "http://127.0.0.1:3333"}  # fmt: skip
    monkeypatch.setattr(app_module.subprocess, "run", fake_calico_lab(labs))
    monkeypatch.setenv("CALICO_LAB", "mine")
    assert app_module.find_lab_endpoints() == ("mine", "http://127.0.0.1:3333")
