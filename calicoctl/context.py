"""What every calicoctl command gets: parsed arguments, a lazily connected datastore, output,
and the one error type that becomes a line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

# Start-up is the floor of every calicoctl command (`get profiles` should feel instant), so
# calico.resources (23 ms to import here), calico.keys (which needs it), calico.datastore and
# the etcd client (grpc, ~250 ms) are imported inside the functions that need them.


class CliError(Exception):
    """A failure to report as one line on stderr (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = " ".join(message.split("\n")).strip()


class ArgParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 1 like every error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')")


# ---------------------------------------------------------------- shared context


class Cli:
    """What a command gets: its parsed arguments, a lazily connected datastore, output.

    Every command module (calicoctl/*_commands.py) uses the same object: `cli.args`,
    `cli.datastore()`, `cli.out(text)`, `cli.err(line)`; raise `CliError` to fail.
    """

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._datastore: Any = None
        self._settings: Any = None

    def endpoints(self) -> str:
        return self.settings().endpoints

    def settings(self) -> Any:
        """calico.config.EtcdSettings: flags, else the environment, else the config file."""
        if self._settings is None:
            from calico.config import ConfigError, resolve_settings

            a = self.args
            try:
                self._settings = resolve_settings(
                    getattr(a, "etcd_endpoints", None),
                    getattr(a, "etcd_ca_cert_file", None),
                    getattr(a, "etcd_cert_file", None),
                    getattr(a, "etcd_key_file", None),
                    config_file=getattr(a, "config", None),
                )
            except ConfigError as exc:
                raise CliError(f"Failed to load config: {exc}") from None
        return self._settings

    def datastore(self) -> Any:
        """The etcd datastore (connects on first use; imports the etcd client then)."""
        if self._datastore is None:
            from calico.config import ConfigError
            from calico.datastore import Datastore

            try:
                self._datastore = Datastore.connect(self.settings())
            except ConfigError as exc:
                raise CliError(f"Failed to load config: {exc}") from None
        return self._datastore

    def close(self) -> None:
        if self._datastore is not None:
            try:
                self._datastore.close()
            except Exception:  # closing a dead channel must not hide the real outcome
                pass

    def unavailable(self, exc: Exception) -> CliError:
        detail = str(exc).removeprefix("etcd unavailable:").strip() or type(exc).__name__
        grpc_details = re.search(r'details = "([^"]*)"', detail)  # a gRPC error's own words
        if grpc_details:
            detail = grpc_details.group(1)
        endpoints = self.endpoints()
        # The datastore names the member that failed: "etcd URL: why".
        if detail.startswith(f"etcd {endpoints}: "):
            detail = detail.removeprefix(f"etcd {endpoints}: ")
        elif detail.startswith("etcd http"):
            detail = detail.removeprefix("etcd ")
        return CliError(f"etcd unavailable at {endpoints}: {detail}")

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(line: str) -> None:
        sys.stderr.write(" ".join(line.split("\n")).rstrip() + "\n")
