"""A loopback OpenAI-compatible server (chat completions and text completions) with scripted replies and
injectable faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """What the server does for one request; build it with the helpers below."""

    kind: str = "ok"  # ok | error | empty | malformed | drop
    texts: tuple[str, ...] = ("",)
    status: int = 200
    message: str = ""
    retry_after: str | None = None
    delay_s: float = 0.0
    usage: dict[str, int] = field(default_factory=dict)


def ok(
    text: str | list[str] = "", *, prompt_tokens: int = 11, completion_tokens: int = 7, delay_s: float = 0.0
) -> Reply:
    """A normal completion; a list of texts gives one choice each."""
    texts = (text,) if isinstance(text, str) else tuple(text)
    return Reply(
        texts=texts,
        delay_s=delay_s,
        usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    )


def error(status: int, message: str = "scripted error", *, retry_after: str | None = None) -> Reply:
    """An HTTP error in the OpenAI error format, optionally with a Retry-After header."""
    return Reply(kind="error", status=status, message=message, retry_after=retry_after)


def slow(delay_s: float, text: str = "late") -> Reply:
    """A completion that arrives after ``delay_s`` seconds (longer than a client timeout)."""
    return ok(text, delay_s=delay_s)


def empty_choices() -> Reply:
    """A 200 with ``choices: []``."""
    return Reply(kind="empty")


def malformed() -> Reply:
    """A 200 whose body is not JSON."""
    return Reply(kind="malformed")


def drop() -> Reply:
    """Close the connection without answering."""
    return Reply(kind="drop")


class FakeOpenAI:
    """Serve scripted replies on 127.0.0.1; use as a context manager. Stops itself after ``lifetime_s``."""

    def __init__(
        self, *replies: Reply, default: Reply | None = None, lifetime_s: float = 60.0, max_requests: int = 500
    ):
        self._queue: deque[Reply] = deque(replies)
        self.default = default or ok("default reply")
        self.requests: list[dict] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._max_requests = max_requests
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        """Base URL as a client wants it (ends in /v1)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue more replies; when the queue is empty the default reply is used."""
        with self._lock:
            self._queue.extend(replies)

    def start(self) -> FakeOpenAI:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def user_prompts(self) -> list[str]:
        """The last user message of every recorded chat request (a text completion's prompt)."""
        return [
            [m["content"] for m in r["body"]["messages"] if m["role"] == "user"][-1]
            if "messages" in r["body"]
            else r["body"].get("prompt", "")
            for r in self.requests
        ]

    def _next(self, record: dict) -> Reply:
        with self._lock:
            self.requests.append(record)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if len(self.requests) > self._max_requests:
                return error(503, "fake server request limit reached")
            return self._queue.popleft() if self._queue else self.default

    def _done(self) -> None:
        with self._lock:
            self.active -= 1

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                routes = ("/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions")
                if self.path.rstrip("/") not in routes:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                reply = fake._next(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                try:
                    self._answer(reply, body)
                except OSError:
                    pass  # the client gave up (timeout) or we dropped it on purpose
                finally:
                    fake._done()

            def _answer(self, reply: Reply, body: dict) -> None:
                if reply.delay_s and fake._stop.wait(reply.delay_s):
                    return
                if reply.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.kind == "malformed":
                    self._send(200, b"{this is not json")
                    return
                if reply.kind == "error":
                    headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
                    err = {"error": {"message": reply.message, "type": "scripted", "code": reply.status}}
                    self._send(reply.status, err, headers)
                    return
                n = int(body.get("n") or 1)
                texts = reply.texts if len(reply.texts) > 1 else reply.texts * n
                chat = "chat" in self.path
                choices = (
                    []
                    if reply.kind == "empty"
                    else [
                        {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        if chat
                        else {"index": i, "text": t, "finish_reason": "stop"}
                        for i, t in enumerate(texts)
                    ]
                )
                usage = {**{"prompt_tokens": 0, "completion_tokens": 0}, **reply.usage}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion" if chat else "text_completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": choices,
                        "usage": usage,
                    },
                )

            def _send(
                self, status: int, payload: dict | bytes, headers: dict[str, str] | None = None
            ) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
