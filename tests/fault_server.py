"""A local HTTP server for download tests: in-memory files, Range requests, injected faults.

    with FaultServer() as server:
        url = server.add("/ds/a.bin", data, faults=[status(503), drop(after=1000)])
        ...
        assert [r.range for r in server.requests] == [None, None, "bytes=1000-"]

Each fault answers one request of its path, in order; later requests are served
normally. Unknown paths answer 404. Every request is recorded before it is answered.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass(frozen=True)
class Fault:
    """What one request gets instead of the normal answer."""

    status: int | None = None  # answer with this status and an empty body
    retry_after: str | None = None  # Retry-After header sent with ``status``
    drop_after: int | None = None  # send full headers, this many body bytes, then close
    corrupt: bool = False  # send the right number of wrong bytes


def status(code: int, retry_after: str | None = None) -> Fault:
    return Fault(status=code, retry_after=retry_after)


def drop(after: int) -> Fault:
    return Fault(drop_after=after)


def corrupt() -> Fault:
    return Fault(corrupt=True)


@dataclass(frozen=True)
class Request:
    path: str
    range: str | None  # the Range header as sent, None when absent
    status: int  # the status answered


@dataclass
class _File:
    data: bytes
    faults: list[Fault]
    ranges: bool  # False: ignore Range headers and always answer 200


@dataclass
class _Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop_after: int | None = None


class FaultServer:
    """Threaded HTTP server on 127.0.0.1 (free port); use as a context manager."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fault_server = self  # type: ignore[attr-defined]
        # a short poll interval: shutdown() waits up to one interval, once per test
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def add(self, path: str, data: bytes, faults: Sequence[Fault] = (), *, ranges: bool = True) -> str:
        """Serve ``data`` at ``path``, answering its first requests with ``faults``; returns its URL."""
        with self._lock:
            self._files[_normal(path)] = _File(bytes(data), list(faults), ranges)
        return self.url(path)

    def url(self, path: str = "") -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == _normal(path)]

    def _answer(self, path: str, range_header: str | None) -> _Answer:
        with self._lock:
            file = self._files.get(path)
            fault = file.faults.pop(0) if file and file.faults else Fault()
            answer = _plan(file, fault, range_header)
            self._requests.append(Request(path, range_header, answer.status))
        return answer


def _normal(path: str) -> str:
    return "/" + path.lstrip("/")


def _plan(file: _File | None, fault: Fault, range_header: str | None) -> _Answer:
    if file is None:
        return _Answer(404, body=b"not found")
    if fault.status is not None:
        return _Answer(fault.status, {"Retry-After": fault.retry_after} if fault.retry_after else {})
    data = bytes(b ^ 0xFF for b in file.data) if fault.corrupt else file.data
    match = _RANGE.match(range_header or "") if file.ranges else None
    if match is None:
        answer = _Answer(200, body=data)
    else:
        first = int(match[1])
        last = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
        if first >= len(data) or first > last:
            return _Answer(416, {"Content-Range": f"bytes */{len(data)}"})
        answer = _Answer(206, {"Content-Range": f"bytes {first}-{last}/{len(data)}"}, data[first : last + 1])
    if file.ranges:
        answer.headers["Accept-Ranges"] = "bytes"
    answer.drop_after = fault.drop_after
    return answer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: FaultServer = self.server.fault_server  # type: ignore[attr-defined]
        answer = server._answer(urlsplit(self.path).path, self.headers.get("Range"))
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.drop_after is None:
            self.wfile.write(answer.body)
            return
        self.wfile.write(answer.body[: answer.drop_after])
        self.wfile.flush()
        # A clean FIN, not a reset: the client must receive every byte sent before the drop.
        self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass
