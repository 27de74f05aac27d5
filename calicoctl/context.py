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
        self._endpoints: str | None = None

    def endpoints(self) -> str:
        if self._endpoints is None:
            from calico.config import ConfigError, resolve_endpoints

            try:
                self._endpoints = resolve_endpoints(
                    getattr(self.args, "etcd_endpoints", None), getattr(self.args, "config", None)
                )
            except ConfigError as exc:
                raise CliError(f"Failed to load config: {exc}") from None
        return self._endpoints

    def datastore(self) -> Any:
        """The etcd datastore (connects on first use; imports the etcd client then)."""
        if self._datastore is None:
            from calico.config import ConfigError
            from calico.datastore import Datastore

            try:
                self._datastore = Datastore.connect(self.endpoints())
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
        return CliError(f"etcd unavailable at {self.endpoints()}: {detail}")

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(line: str) -> None:
        sys.stderr.write(" ".join(line.split("\n")).rstrip() + "\n")
