"""HTTP proxy that makes a moto server enforce AWS Cognito rules moto ignores.

moto accepts requests that real Cognito rejects (``ListUsers`` with
``Limit`` > 60, writes to immutable or unknown custom attributes) and never
throttles.  Code that passes against bare moto can therefore fail in AWS.
``StrictCognitoProxy`` sits between the client under test and moto, enforces
those rules itself and forwards everything else unchanged.

It also injects the faults a real service shows now and then (``inject``): a 5xx
answer, a connection closed without an answer, a write whose answer is lost, a
ListUsers page that silently comes back without its users or without its token.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
LIST_USERS_MAX_LIMIT = 60
"""AWS ``QueryLimitType`` maximum; botocore validates only the minimum."""

_JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
_HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Headers copied onto the proxy's own DescribeUserPool call: moto derives the
# region (and account) from the SigV4 credential scope in Authorization.
_SIGNING_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")

Outcome = Literal["accepted", "throttled", "rejected", "faulted"]
Fault = Literal["server_error", "hang_up", "lose_answer", "drop_users", "end_chain"]
FAULTS: dict[str, str] = {
    "server_error": "answer 500 InternalErrorException; the call never reaches the service",
    "hang_up": "close the connection without an answer; the call never reaches the service",
    "lose_answer": "forward the call (it takes effect), then answer 500: the answer is lost",
    "drop_users": "forward, then answer the page without its users (its token kept): a silently short page",
    "end_chain": "forward, then answer the page without its PaginationToken: the listing ends early",
}
_BEFORE_FORWARD = frozenset({"server_error", "hang_up"})


def first_page(params: dict[str, Any] | None) -> bool:
    """A ListUsers call that starts a token chain (for ``inject(..., when=first_page)``)."""
    return not (params or {}).get("PaginationToken")


STATS_PATH = "/_strict/stats"


class CallEvent(NamedTuple):
    """One Cognito call seen by the proxy, for timing assertions in tests."""

    at: float
    """``time.monotonic()`` when the call was admitted or throttled (after latency)."""
    operation: str
    outcome: Outcome


class _CognitoError(Exception):
    """An AWS-style JSON error the proxy answers instead of forwarding."""

    def __init__(self, code: str, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.outcome = outcome


class _SchemaUnavailableError(Exception):
    """DescribeUserPool failed upstream; upstream will report it properly."""


class _Upstream:
    """Minimal http.client wrapper; one connection per request keeps it thread-safe."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream_url must be an http(s) URL, got {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout

    def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn_cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_cls(self._host, self._port, timeout=self._timeout)
        try:
            # http.client adds Host and Content-Length for us.
            conn.request(method, self._prefix + path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()


class StrictCognitoProxy:
    """Proxy in front of a moto server adding AWS Cognito validation and quotas.

    Counters (``calls``, ``throttled``, ``rejected``, ``faulted``) are keyed by
    operation name and only cover ``cognito-idp`` requests made by clients; the
    proxy's own ``DescribeUserPool`` lookups are neither counted nor throttled.
    A call rejected for a rule violation still uses its quota slot, as it did
    reach the service.  ``calls`` counts what reached moto (``lose_answer``,
    ``drop_users`` and ``end_chain`` calls included; they are also counted in
    ``faulted``).  Update counters only while holding ``lock``.
    """

    def __init__(
        self,
        upstream_url: str,
        latency: float = 0.0,
        quotas: dict[str, float] | None = None,
        throttle_next: dict[str, int] | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self.upstream_url = upstream_url
        self.latency = latency
        self.quotas: dict[str, float] = dict(quotas or {})
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.events: list[CallEvent] = []
        self._throttle_next: Counter[str] = Counter(throttle_next or {})
        self._faults: dict[str, deque[tuple[Fault, Callable[[dict[str, Any] | None], bool] | None]]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._schemas: dict[str, dict[str, dict[str, Any]]] = {}
        self._schema_generation: Counter[str] = Counter()
        self._upstream = _Upstream(upstream_url)
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running proxy, for ``endpoint_url``."""
        if self._server is None:
            raise RuntimeError("proxy is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind a free port on 127.0.0.1, serve in a daemon thread, return the URL."""
        if self._server is not None:
            raise RuntimeError("proxy already started")
        server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        server.proxy = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one interval
            name="strict-cognito-proxy",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters and events as JSON-able data (events: [monotonic time, operation, outcome])."""
        with self.lock:
            return {
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "rejected": dict(self.rejected),
                "faulted": dict(self.faulted),
                "events": [list(e) for e in self.events],
            }

    def force_throttle(self, operation: str, times: int) -> None:
        """Throttle the next ``times`` calls of ``operation``, regardless of quota."""
        if times < 0:
            raise ValueError("times must be >= 0")
        with self.lock:
            self._throttle_next[operation] += times

    def inject(
        self,
        operation: str,
        fault: Fault,
        times: int = 1,
        when: Callable[[dict[str, Any] | None], bool] | None = None,
    ) -> None:
        """Give the next ``times`` calls of ``operation`` that ``fault`` (see FAULTS), after any queued before.

        A fault before forwarding hits the next call; one after forwarding hits the next
        call that is neither throttled nor rejected. ``when`` (given the call's parameters)
        narrows it to the calls it accepts, e.g. ``first_page``; the queue waits for one.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        if times < 0:
            raise ValueError("times must be >= 0")
        with self.lock:
            self._faults.setdefault(operation, deque()).extend([(fault, when)] * times)

    def _take_fault(self, operation: str, params: dict[str, Any] | None, *, forwarded: bool) -> Fault | None:
        """The next injected fault of ``operation`` if it strikes this call now (before or after forwarding)."""
        with self.lock:
            queue = self._faults.get(operation)
            if not queue:
                return None
            fault, when = queue[0]
            if (fault in _BEFORE_FORWARD) == forwarded or (when is not None and not when(params)):
                return None
            queue.popleft()
            self._record(time.monotonic(), operation, "faulted")
            return fault

    # -- request handling (called from handler threads) ----------------------

    def _judge(self, operation: str, params: dict[str, Any] | None, headers: Message) -> _CognitoError | None:
        """Decide a call's fate and record it; return the error to answer, if any."""
        try:
            admitted_at = self._admit(operation)
        except _CognitoError as err:
            return err
        error: _CognitoError | None = None
        try:
            if params is not None:
                self._validate(operation, params, headers)
        except _CognitoError as err:
            error = err
        with self.lock:
            self._record(admitted_at, operation, "rejected" if error else "accepted")
        return error

    def _after_forward(self, operation: str, params: dict[str, Any] | None) -> None:
        """Drop cached schemas that a forwarded call may have changed."""
        if operation == "AddCustomAttributes" and params is not None:
            pool_id = params.get("UserPoolId")
            if isinstance(pool_id, str):
                with self.lock:
                    self._schemas.pop(pool_id, None)
                    self._schema_generation[pool_id] += 1

    def _admit(self, operation: str) -> float:
        """Apply forced throttles and the one-second sliding quota window.

        Returns the admission time, which is what the quota window counts.
        """
        with self.lock:
            now = time.monotonic()
            if self._throttle_next[operation] > 0:
                self._throttle_next[operation] -= 1
                self._record(now, operation, "throttled")
                raise _CognitoError("TooManyRequestsException", "Too many requests", "throttled")
            quota = self.quotas.get(operation)
            if quota is None:
                return now
            window = self._windows.setdefault(operation, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= quota:
                self._record(now, operation, "throttled")
                raise _CognitoError(
                    "TooManyRequestsException",
                    f"Rate exceeded for {operation} (quota {quota:g} requests per second)",
                    "throttled",
                )
            window.append(now)
            return now

    def _record(self, at: float, operation: str, outcome: Outcome) -> None:
        """Update counters; caller holds ``lock``."""
        counter = {
            "accepted": self.calls,
            "throttled": self.throttled,
            "rejected": self.rejected,
            "faulted": self.faulted,
        }
        counter[outcome][operation] += 1
        self.events.append(CallEvent(at, operation, outcome))
        logger.debug("cognito-idp %s: %s", operation, outcome)

    def _validate(self, operation: str, params: dict[str, Any], headers: Message) -> None:
        """Raise ``_CognitoError`` if AWS would reject these parameters."""
        if operation == "ListUsers":
            _check_list_users_limit(params.get("Limit"))
        elif operation in ("AdminUpdateUserAttributes", "AdminCreateUser"):
            names = [str(attr.get("Name", "")) for attr in params.get("UserAttributes") or [] if isinstance(attr, dict)]
            custom = [name for name in names if name.startswith("custom:")]
            pool_id = params.get("UserPoolId")
            if not custom or not isinstance(pool_id, str):
                return
            try:
                schema = self._schema(pool_id, headers)
            except _SchemaUnavailableError:
                return  # e.g. unknown pool: let upstream answer as AWS would
            _check_custom_attributes(operation, custom, schema)

    def _schema(self, pool_id: str, headers: Message) -> dict[str, dict[str, Any]]:
        """Return the pool's schema attributes by name, cached until AddCustomAttributes."""
        with self.lock:
            cached = self._schemas.get(pool_id)
            generation = self._schema_generation[pool_id]
        if cached is not None:
            return cached
        fetch_headers = {name: str(headers[name]) for name in _SIGNING_HEADERS if name in headers}
        fetch_headers["Content-Type"] = _JSON_CONTENT_TYPE
        fetch_headers["X-Amz-Target"] = TARGET_PREFIX + "DescribeUserPool"
        body = json.dumps({"UserPoolId": pool_id}).encode()
        try:
            status, _, raw = self._upstream.request("POST", "/", body, fetch_headers)
        except OSError as exc:
            raise _SchemaUnavailableError from exc
        if status != 200:
            raise _SchemaUnavailableError
        try:
            attributes = json.loads(raw)["UserPool"].get("SchemaAttributes", [])
            schema = {attr["Name"]: attr for attr in attributes}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _SchemaUnavailableError from exc
        with self.lock:
            # Don't cache a result that raced with an AddCustomAttributes.
            if self._schema_generation[pool_id] == generation:
                self._schemas[pool_id] = schema
        return schema


def _check_list_users_limit(limit: Any) -> None:
    if isinstance(limit, int) and not 0 <= limit <= LIST_USERS_MAX_LIMIT:
        bound = (
            f"less than or equal to {LIST_USERS_MAX_LIMIT}"
            if limit > LIST_USERS_MAX_LIMIT
            else "greater than or equal to 0"
        )
        raise _CognitoError(
            "InvalidParameterException",
            f"1 validation error detected: Value '{limit}' at 'limit' failed to "
            f"satisfy constraint: Member must have value {bound}",
            "rejected",
        )


def _check_custom_attributes(operation: str, names: list[str], schema: Mapping[str, Mapping[str, Any]]) -> None:
    problems: list[str] = []
    for name in names:
        entry = schema.get(name)
        if entry is None:
            problems.append(f"{name}: Attribute does not exist in the schema.")
        elif operation == "AdminUpdateUserAttributes" and entry.get("Mutable") is False:
            problems.append(f"{name}: Attribute cannot be updated.")
    if problems:
        prefix = (
            "Invalid user attributes: "
            if operation == "AdminUpdateUserAttributes"
            else "Attributes did not conform to the schema: "
        )
        raise _CognitoError("InvalidParameterException", prefix + "\n".join(problems), "rejected")


def _json_object(body: bytes) -> dict[str, Any] | None:
    """Parse a request body; None if it is not a JSON object (upstream will complain)."""
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class _ProxyServer(ThreadingHTTPServer):
    """Tracks open connections: keep-alive ones would otherwise outlive ``stop()``."""

    daemon_threads = True
    proxy: StrictCognitoProxy

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on clients so their pooled connections fail instead of being served."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler failures; a client hanging up mid-response is routine."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            logger.debug("connection dropped: %s", type(exc).__name__)
        else:
            logger.exception("strict cognito proxy failed to handle a request")


class _ProxyHandler(BaseHTTPRequestHandler):
    """Judges cognito-idp calls (every one is a POST) and relays them; GET serves the counters."""

    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _ProxyServer

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        if self.path == STATS_PATH:  # the proxy's own counters, for a caller in another process
            body = json.dumps(self.server.proxy.stats()).encode()
            self._send(200, [("Content-Type", "application/json")], body)
            return
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence stderr access logs; operation-level logging happens elsewhere."""

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if proxy.latency:
            time.sleep(proxy.latency / 2)  # the request's way there; the answer's way back is in _send
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            self._forward(body)
            return
        operation = target[len(TARGET_PREFIX) :]
        params = _json_object(body)
        fault = proxy._take_fault(operation, params, forwarded=False)
        if fault == "hang_up":
            self.close_connection = True  # nothing is written: the client sees the connection closed
            return
        if fault == "server_error":
            self._send_error("InternalErrorException", "Internal server error (injected)", status=500)
            return
        err = proxy._judge(operation, params, self.headers)
        if err is not None:
            self._send_error(err.code, err.message)
            return
        self._forward(body, operation, params)
        proxy._after_forward(operation, params)

    def _forward(self, body: bytes, operation: str | None = None, params: dict[str, Any] | None = None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, resp_headers, resp_body = self.server.proxy._upstream.request(
                self.command, self.path, body, headers
            )
        except OSError as exc:
            logger.warning("upstream request failed: %s", type(exc).__name__)
            self._send(502, [("Content-Type", "text/plain")], b"upstream unavailable")
            return
        fault = (
            self.server.proxy._take_fault(operation, params, forwarded=True) if operation and status == 200 else None
        )
        if fault == "lose_answer":
            self._send_error("InternalErrorException", "Internal server error (injected)", status=500)
            return
        if fault in ("drop_users", "end_chain"):
            resp_body = _mangle_page(resp_body, fault)
        relayed = [(k, v) for k, v in resp_headers if k.lower() not in _HOP_BY_HOP]
        self._send(status, relayed, resp_body)

    def _send_error(self, code: str, message: str, status: int = 400) -> None:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [
            ("Content-Type", _JSON_CONTENT_TYPE),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Date", self.date_time_string()),
        ]
        self._send(status, headers, body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.server.proxy.latency and self.path != STATS_PATH:
            time.sleep(self.server.proxy.latency / 2)
        self.send_response_only(status)  # no Server/Date: relayed ones would duplicate
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _mangle_page(body: bytes, fault: Fault) -> bytes:
    """A ListUsers answer without its users (token kept) or without its token."""
    page = json.loads(body)
    if fault == "drop_users":
        page["Users"] = []
    else:
        page.pop("PaginationToken", None)
    return json.dumps(page).encode()


def main() -> None:
    """Run the layer in a process of its own: its timing then shares no interpreter lock with the caller.

    ``python -m devtools.strict_cognito --upstream URL [--latency S] [--quota Operation=RPS ...]``
    prints its URL on one line and serves until its standard input closes; counters at GET /_strict/stats.
    """
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--quota", action="append", default=[], help="Operation=requests per second")
    args = parser.parse_args()
    quotas = {op: float(rps) for op, rps in (q.split("=", 1) for q in args.quota)}
    with StrictCognitoProxy(args.upstream, latency=args.latency, quotas=quotas) as proxy:
        print(proxy.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
