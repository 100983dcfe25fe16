"""Addresses and ZeroMQ CURVE keys for the actor-learner sockets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from thoughtmdp.errors import ThoughtMDPError

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def check_bind_address(address: str, allow_remote: bool) -> None:
    """Refuse a non-loopback TCP bind unless ``allow_remote`` says it is intended.

    Raises:
        ThoughtMDPError: For a remote address without ``allow_remote``.

    >>> check_bind_address("tcp://127.0.0.1:5555", allow_remote=False)
    >>> check_bind_address("ipc:///tmp/learner", allow_remote=False)
    """
    parts = urlsplit(address)
    if parts.scheme != "tcp":
        return
    host = parts.hostname or ""
    if host in LOOPBACK_NAMES or _is_loopback_ip(host):
        return
    if not allow_remote:
        raise ThoughtMDPError(
            f"refusing to bind {address!r}: it is reachable from other hosts. Pass "
            "allow_remote=True (--allow-remote) to mean it, preferably with CURVE keys"
        )


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CurveServer:
    """CURVE keys of the learner's socket.

    Attributes:
        secret_file: The learner's secret certificate (``zmq.auth.create_certificates``).
        authorized_dir: Directory of the public certificates of the actors allowed in.
    """

    secret_file: Path
    authorized_dir: Path


@dataclass(frozen=True)
class CurveClient:
    """CURVE keys of an actor's socket.

    Attributes:
        secret_file: The actor's secret certificate.
        server_public_file: The learner's public certificate.
    """

    secret_file: Path
    server_public_file: Path


def load_keys(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    """``(public, secret)`` keys from a certificate file, with an error naming the file."""
    import zmq.auth

    if not Path(path).is_file():
        raise ThoughtMDPError(f"CURVE certificate {str(path)!r} does not exist")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and not secret_key:
        raise ThoughtMDPError(f"CURVE certificate {str(path)!r} holds no secret key")
    return public, secret_key


def apply_server_keys(socket: Any, keys: CurveServer) -> None:
    """Make ``socket`` a CURVE server with the learner's keys."""
    public, secret = load_keys(keys.secret_file, secret=True)
    socket.curve_publickey, socket.curve_secretkey = public, secret
    socket.curve_server = True


def apply_client_keys(socket: Any, keys: CurveClient) -> None:
    """Make ``socket`` a CURVE client of the learner."""
    public, secret = load_keys(keys.secret_file, secret=True)
    server_public, _ = load_keys(keys.server_public_file, secret=False)
    socket.curve_publickey, socket.curve_secretkey = public, secret
    socket.curve_serverkey = server_public
