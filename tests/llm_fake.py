"""A chat-completions server on 127.0.0.1 that answers like a (very simple) language model.

A code applies to a segment when the code's id appears in the segment's text (any case); the
quote is that word as written. Its failure modes are switched on by the test: ``actions`` is a
queue of what the next requests get ("429", "500", "slow", "400"), ``reject_json_schema``
refuses structured output, ``die_after`` closes the listening socket after that many answers
(a server killed mid-run), and words in a segment change the answer: NOTVERBATIM (a quote that is
not in the segment), FENCED (JSON in a code fence with a trailing comma), GARBLED (no JSON at all).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(
        self, request, client_address
    ):  # a client that gave up on a slow answer: not news
        pass


class FakeChatServer:
    def __init__(self, port: int = 0):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.actions: list[str] = []
        self.reject_json_schema = False
        self.die_after: int | None = None
        self.slow_seconds = 1.5
        self.delay = 0.0  # seconds before every answer
        self.answered = 0
        self.dead = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                fake._handle(self)

        self._httpd = _Server(("127.0.0.1", port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if not self._closed:
            self._closed = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- answering ---------------------------------------------------------------------------

    def segments_asked(self) -> list[str]:
        return [segment_text(body) for body in self.requests]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length))
        with self._lock:
            if self.dead:  # killed: the connection drops without an answer
                handler.close_connection = True
                return
            self.requests.append(body)
            self.headers.append(dict(handler.headers))
            action = self.actions.pop(0) if self.actions else None
        if handler.path.rstrip("/") != "/v1/chat/completions":
            return _send(handler, 404, {"error": {"message": f"no route {handler.path}"}})
        if action == "429":
            return _send(
                handler, 429, {"error": {"message": "rate limited"}}, {"retry-after-ms": "10"}
            )
        if action == "500":
            return _send(handler, 500, {"error": {"message": "the model crashed"}})
        if action == "400":
            return _send(handler, 400, {"error": {"message": "context length exceeded"}})
        if action == "slow":
            time.sleep(self.slow_seconds)
        time.sleep(self.delay)
        format_ = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and format_ == "json_schema":
            return _send(
                handler, 400, {"error": {"message": "response_format json_schema is not supported"}}
            )
        content = answer(body)
        with self._lock:
            self.answered += 1
            dying = self.die_after is not None and self.answered >= self.die_after
            self.dead = self.dead or dying
        _send(
            handler,
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(json.dumps(body["messages"])) // 4,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": 0,
                },
            },
        )
        if dying:
            threading.Thread(target=self.stop, daemon=True).start()


def _send(handler, status: int, payload: dict, headers: dict | None = None) -> None:
    data = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def segment_text(body: dict) -> str:
    user = body["messages"][-1]["content"]
    return (
        user.split("SEGMENT (speaker:", 1)[1].split("):\n", 1)[1]
        if "SEGMENT (speaker:" in user
        else user
    )


def code_ids(body: dict) -> list[str]:
    return re.findall(r"^- id: (\S+)$", body["messages"][0]["content"], flags=re.MULTILINE)


def answer(body: dict) -> str:
    text = segment_text(body)
    if "GARBLED" in text:
        return "I think trust applies here, mostly!"
    codes = {}
    for code_id in code_ids(body):
        found = re.search(re.escape(code_id), text, flags=re.IGNORECASE)
        quote = found.group(0) if found else ""
        if found and "NOTVERBATIM" in text:
            quote = "words she never said"
        codes[code_id] = {
            "applies": bool(found),
            "confidence": 0.9 if found else 0.8,
            "quote": quote,
        }
    content = json.dumps(codes)
    if "FENCED" in text:
        return "Here you are:\n```json\n" + content[:-1] + ",}\n```"
    return content
