"""What every calicoctl command gets: parsed arguments, a lazily connected datastore, output,
and the one error type that becomes a line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

# Start-up is the floor of every calicoctl command (`get profiles` should feel instant), so
# calico.resources (23 ms to import here), calico.datastore and the etcd client (grpc and
# pyetcd, ~55 ms on an idle machine) are imported inside the functions that need them; a
# one-shot read (`cli.reader()`) goes over etcd's JSON gateway and imports neither.


class CliError(Exception):
    """A failure to report as one line on stderr (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = " ".join(message.split("\n")).strip()


class ArgParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit status 1 like every error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument (to check the metavar), and
        # its default width comes from shutil, whose import (bz2, lzma, ...) cost every
        # command 2 ms. The same width as shutil.get_terminal_size gives, without it.
        return self.formatter_class(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """$COLUMNS, else the terminal's width, else 80 (shutil.get_terminal_size's rule)."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


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
        self._reader: Reader | None = None

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

    def reader(self) -> Reader:
        """What a read-only command reads with: kv_get and kv_list over etcd's JSON gateway
        (calico.etcd_gateway), the same answers and errors as the datastore's, without
        importing gRPC."""
        if self._reader is None:
            self._reader = Reader(self)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
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


class Reader:
    """Reads through the JSON gateway; through the gRPC datastore when a member has no
    gateway (etcd --enable-grpc-gateway=false) or the command already connected one."""

    def __init__(self, cli: Cli):
        self.cli = cli
        self.gateway: Any = None
        self.use_datastore = False

    def kv_get(self, key: str) -> Any:
        return self._read("kv_get", key)

    def kv_list(self, prefix: str) -> tuple[list[Any], int]:
        return self._read("kv_list", prefix)

    def _read(self, name: str, *args: Any) -> Any:
        if not self.use_datastore and self.cli._datastore is None:
            from calico.etcd_gateway import Gateway, GatewayMissing

            if self.gateway is None:
                self.gateway = Gateway(self.cli.settings())
            try:
                return getattr(self.gateway, name)(*args)
            except GatewayMissing:
                self.close()
                self.use_datastore = True
        return getattr(self.cli.datastore(), name)(*args)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
            self.gateway = None
