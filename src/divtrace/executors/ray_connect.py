"""Connecting divtrace to Ray: check a cluster address before any work, bound the connection in time, and settle
Ray's token authentication the same way for a cluster divtrace starts and one started with ``ray start --head``.

**Address check.** Ray's own connection retries for many minutes when nothing answers (about twenty attempts of
half a minute each), deaf to Ctrl-C while it waits in native code. :func:`check_ray_address` instead opens a plain
TCP connection to the address with a timeout, then asks the GCS for the cluster id with Ray's connection timeouts
cut to the same budget, and raises :class:`~divtrace.errors.DivtraceError` saying what to do.

**Token authentication** (Ray 2.60). ``ray start --head`` turns token authentication on when ``RAY_AUTH_MODE`` is
unset and a token exists (``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``);
a bare ``ray.init()`` that starts a local Ray turns it on *always* and writes ``~/.ray/auth_token`` if missing, and
a driver connecting to an explicit address turns it on *only* when ``RAY_AUTH_MODE=token``. So one local divtrace
run used to leave a token that made every later ``ray start --head`` cluster require it, while divtrace itself then
connected without it and was refused. :func:`ray_auth` applies the ``ray start --head`` rule (:func:`auth_mode`) to
every connection divtrace makes, local or remote: with a token, token mode with that token; without one, no
authentication and no token file written.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from divtrace.errors import DivtraceError

#: Seconds divtrace waits for a Ray cluster to answer before giving up.
CONNECT_TIMEOUT_S = 10.0

#: Ray's environment variables for token authentication.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def default_token_path() -> Path:
    """Where Ray looks for a token when neither ``RAY_AUTH_TOKEN`` nor ``RAY_AUTH_TOKEN_PATH`` is set."""
    return Path.home() / ".ray" / "auth_token"


def token_available() -> bool:
    """True when Ray would find an authentication token: ``RAY_AUTH_TOKEN`` is set, or the file named by
    ``RAY_AUTH_TOKEN_PATH`` (else ``~/.ray/auth_token``) exists and is not empty."""
    if os.environ.get(AUTH_TOKEN_ENV, "").strip():
        return True
    path = os.environ.get(AUTH_TOKEN_PATH_ENV)
    token_file = Path(path).expanduser() if path else default_token_path()
    try:
        return bool(token_file.read_text(encoding="utf-8").strip())
    except OSError:
        return False


def auth_mode() -> str:
    """The authentication mode for a divtrace connection: ``RAY_AUTH_MODE`` when set, else ``"token"`` when a token
    is available (:func:`token_available`), else ``"disabled"``: the rule ``ray start --head`` uses for its cluster."""
    explicit = os.environ.get(AUTH_MODE_ENV)
    if explicit:
        return explicit.lower()
    return "token" if token_available() else "disabled"


def _refresh_ray_config() -> None:
    """Make Ray's native config and token cache see the current environment (as Ray itself does after setting
    ``RAY_AUTH_MODE``); only safe while no Ray session is up in this process."""
    # Imported by name: ray's _raylet.pyi stub omits these Cython classes.
    raylet = importlib.import_module("ray._raylet")
    raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (keys already set by the user are left alone), then restore."""
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


@contextlib.contextmanager
def ray_auth() -> Iterator[str]:
    """For the block, pin ``RAY_AUTH_MODE`` to :func:`auth_mode` (unless the user set it) and refresh Ray's config,
    so that ``ray.init`` authenticates the same way whether it starts a local Ray or joins a ``ray start --head``
    cluster, and never writes ``~/.ray/auth_token`` on its own. Yields the mode. Enter it before ``ray.init`` and
    leave it after ``ray.shutdown``."""
    mode = auth_mode()
    try:
        with _environment({AUTH_MODE_ENV: mode}):
            _refresh_ray_config()
            yield mode
    finally:
        with contextlib.suppress(Exception):  # back to the user's environment for a later session
            _refresh_ray_config()


def connect_timeouts(timeout_s: float) -> dict[str, str]:
    """Ray's environment knobs that bound a driver's connection to an existing cluster to about ``timeout_s``:
    the gRPC connect timeout, the GCS client's wait for the cluster id (a third each: a GCS client waits for its
    channel, its pubsub channel and the cluster id in turn), and ``ray.init``'s retry count."""
    seconds = str(max(1, math.ceil(timeout_s / 3)))
    return {
        "RAY_gcs_rpc_server_connect_timeout_s": seconds,
        "RAY_py_gcs_connect_timeout_s": seconds,
        "RAY_gcs_server_port_wait_time_s": "1",  # ray.init's connection attempts (each bounded as above)
    }


@contextlib.contextmanager
def bounded_connect(timeout_s: float) -> Iterator[None]:
    """For the block, cut Ray's connection timeouts to :func:`connect_timeouts` (knobs the user set are kept), so
    a ``ray.init`` to an address that does not answer fails in seconds and Ctrl-C is seen between attempts."""
    with _environment(connect_timeouts(timeout_s)):
        _refresh_ray_config()
        yield


def resolve_address(address: str | None) -> str | None:
    """The cluster address ``ray.init(address=address)`` would join: ``address``, else ``RAY_ADDRESS``; ``"auto"``
    becomes the latest local cluster's address. None when Ray would start a local instance instead."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target == "auto":
        from ray._private.services import find_bootstrap_address

        found = find_bootstrap_address(None)
        if not found:
            raise DivtraceError("--address auto: no local Ray cluster found; start one with `ray start --head`")
        return str(found)
    return target


def _host_port(address: str) -> tuple[str, int]:
    bare = address.removeprefix("ray://").rstrip("/")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise DivtraceError(f"bad Ray address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379) or 'auto'")
    return host.strip("[]"), int(port)


def auth_error(address: str, mode: str) -> DivtraceError:
    """The error for a cluster at ``address`` that refused divtrace's credentials (divtrace used ``mode``)."""
    if mode == "token":
        hint = (
            f"divtrace sent the token from {AUTH_TOKEN_ENV} / {AUTH_TOKEN_PATH_ENV} / {default_token_path()}, and it "
            f"is not this cluster's: set {AUTH_TOKEN_ENV} to the cluster's token (`ray get-auth-token` on the head "
            "node), or restart the cluster after deleting the stale token file"
        )
    elif os.environ.get(AUTH_MODE_ENV, "").lower() == "disabled":
        hint = f"it requires token authentication and {AUTH_MODE_ENV}=disabled is set here: unset it and give divtrace "
        hint += f"the cluster's token ({AUTH_TOKEN_ENV}=<token>, or the file {default_token_path()})"
    else:
        hint = (
            f"it requires token authentication and divtrace has no token: copy the cluster's token (`ray "
            f"get-auth-token` on the head node) to {default_token_path()}, or set {AUTH_TOKEN_ENV}=<token> (or "
            f"{AUTH_TOKEN_PATH_ENV}=<file>)"
        )
    return DivtraceError(f"the Ray cluster at {address} refused divtrace's connection: {hint}")


def _in_thread(call: Any) -> BaseException | None:
    """Run ``call`` in a daemon thread and wait for it here, so that Ctrl-C reaches this (main) thread while
    ``call`` waits in native code; returns the exception ``call`` raised, or None."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as err:  # handed to the waiting thread
            failure.append(err)

    worker = threading.Thread(target=target, name="divtrace-ray-probe", daemon=True)
    worker.start()
    worker.join()  # interruptible: KeyboardInterrupt propagates, the daemon thread is abandoned
    return failure[0] if failure else None


def _probe_gcs(address: str, timeout_s: float) -> None:
    """Ask the GCS at ``address`` for the cluster id, with bounded timeouts; raise DivtraceError if it won't."""
    import ray

    GcsClient = importlib.import_module("ray._raylet").GcsClient  # not in ray's _raylet.pyi stub

    with ray_auth() as mode, bounded_connect(timeout_s):
        err = _in_thread(lambda: GcsClient(address=address, cluster_id=None))
    if isinstance(err, ray.exceptions.AuthenticationError):
        raise auth_error(address, mode) from err
    if err is not None:  # Ray raises RpcError, RaySystemError, ... for a peer that is not a GCS
        reason = str(err).rstrip(".")
        raise DivtraceError(
            f"something listens at {address} but it does not answer as a Ray cluster (GCS) within {timeout_s:g}s "
            f"({reason}): check --address (the head node's GCS port, 6379 by default)"
        ) from err


def check_ray_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Check, before any work, that a Ray cluster answers at ``address`` (HOST:PORT, ``ray://HOST:PORT``,
    ``"auto"``; None means ``RAY_ADDRESS`` if set, else a local Ray is started later and there is nothing to check).

    Opens a TCP connection with ``timeout_s``, then (for a GCS address) asks the GCS for the cluster id with
    the same authentication divtrace will use (:func:`ray_auth`). Raises :class:`DivtraceError` with what to do
    when nothing answers, when the peer is not a Ray cluster, or when the cluster refuses divtrace's token.
    Returns None when the cluster answers. Ctrl-C or SIGTERM while waiting ends the wait (KeyboardInterrupt and
    the signal's default action are not caught here). Safe to call only while no Ray session is up in this process.
    """
    target = resolve_address(address)
    if target is None:
        return
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise DivtraceError(
            f"no Ray cluster answers at {target} within {timeout_s:g}s ({err.strerror or err}): start one with "
            "`ray start --head --port 6379` or fix --address"
        ) from err
    if not target.startswith("ray://"):  # a Ray Client server speaks its own protocol, not the GCS's
        _probe_gcs(f"{host}:{port}", timeout_s)


def init_ray(ray: Any, address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """``ray.init`` for divtrace inside :func:`ray_auth`: joins the cluster at ``address`` with bounded timeouts
    (after :func:`check_ray_address`), or starts a local Ray when there is no address. Raises DivtraceError
    when the connection fails (refused authentication included)."""
    target = resolve_address(address)
    if target is None:
        ray.init(log_to_driver=False, configure_logging=False)
        return
    check_ray_address(target, timeout_s)
    try:
        with bounded_connect(timeout_s):
            ray.init(address=target, log_to_driver=False, configure_logging=False)
    except ray.exceptions.AuthenticationError as err:
        raise auth_error(target, auth_mode()) from err
    except ConnectionError as err:
        raise DivtraceError(f"could not join the Ray cluster at {target}: {err}") from err
