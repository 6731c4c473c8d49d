"""A local HTTP server that speaks the wire formats of the OpenAI Chat Completions, Anthropic Messages and
Gemini generateContent APIs, so tests drive the vendors' real SDKs (`openai`, `anthropic`, `google-genai`)
end to end without the network.

    with VendorServer(answer=lambda vendor, question, jpeg, model: "a daisy") as server:
        server.plan += ["429", "500", "drop"]     # the next requests fail this way, in order; then "ok"
        ... base_url = server.url("openai") ...
        server.requests                            # [(vendor, path, headers, json body)] of every request

Failures: "429" (with Retry-After: 0), "500", "400", "drop" (the connection is closed without an answer).
Usage in replies: input tokens = 100 + the question's length in words, output tokens = the answer's.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _extract(vendor: str, body: dict) -> tuple[str, bytes | None]:
    """(question text, image bytes or None for a text-only request) from a request body in the vendor's format."""
    if vendor == "openai":
        parts = body["messages"][0]["content"]
        if isinstance(parts, str):
            return parts, None
        text = next(p["text"] for p in parts if p["type"] == "text")
        url = next((p["image_url"]["url"] for p in parts if p["type"] == "image_url"), None)
        assert url is None or url.startswith("data:image/jpeg;base64,"), url[:40]
        return text, url and base64.b64decode(url.split(",", 1)[1])
    if vendor == "anthropic":
        parts = body["messages"][0]["content"]
        text = next(p["text"] for p in parts if p["type"] == "text")
        source = next((p["source"] for p in parts if p["type"] == "image"), None)
        if source is None:
            return text, None
        assert source["media_type"] == "image/jpeg" and source["type"] == "base64"
        return text, base64.b64decode(source["data"])
    # Gemini's REST API takes proto JSON, whose field names may be camelCase or snake_case.
    parts = body["contents"][0]["parts"]
    text = next(p["text"] for p in parts if "text" in p)
    blob = next((p.get("inlineData", p.get("inline_data")) for p in parts if "inlineData" in p or "inline_data" in p),
                None)
    if blob is None:
        return text, None
    assert blob.get("mimeType", blob.get("mime_type")) == "image/jpeg"
    return text, base64.b64decode(blob["data"], altchars=b"-_")   # proto JSON bytes: either base64 alphabet


def image_of(vendor: str, body: dict) -> bytes:
    """The image bytes a request carried."""
    return _extract(vendor, body)[1]


def _reply(vendor: str, model: str, answer: str, tokens_in: int, tokens_out: int) -> dict:
    if vendor == "openai":
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1712620800, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": None,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                          "total_tokens": tokens_in + tokens_out}}
    if vendor == "anthropic":
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}
    return {"candidates": [{"content": {"parts": [{"text": answer}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": tokens_in, "candidatesTokenCount": tokens_out,
                              "totalTokenCount": tokens_in + tokens_out}, "modelVersion": model}


def _error(vendor: str, status: int) -> dict:
    message = {429: "Rate limit reached", 500: "The server had an error", 400: "Invalid request"}[status]
    if vendor == "anthropic":
        kind = {429: "rate_limit_error", 500: "api_error", 400: "invalid_request_error"}[status]
        return {"type": "error", "error": {"type": kind, "message": message}}
    if vendor == "google":
        return {"error": {"code": status, "message": message,
                          "status": {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 400: "INVALID_ARGUMENT"}[status]}}
    return {"error": {"message": message, "type": "requests" if status == 429 else "server_error", "code": None}}


class VendorServer:
    def __init__(self, answer):
        """answer(vendor, question, jpeg_bytes or None, model) -> the reply text."""
        self.answer, self.plan, self.requests = answer, [], []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if self.path.startswith("/v1/chat/completions"):
                    vendor, model = "openai", body.get("model")
                elif self.path.startswith("/v1/messages"):
                    vendor, model = "anthropic", body.get("model")
                else:
                    match = re.match(r"/v1(?:beta)?/models/([^:]+):generateContent", self.path)
                    if not match:
                        self.send_error(404, f"no such path {self.path}")
                        return
                    vendor, model = "google", match.group(1)
                with server.lock:
                    server.requests.append((vendor, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    action = server.plan.pop(0) if server.plan else "ok"
                if action == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.connection.close()
                    self.close_connection = True
                    return
                if action != "ok":
                    headers = {"retry-after": "0"} if action == "429" else {}
                    self._send(int(action), _error(vendor, int(action)), headers)
                    return
                question, jpeg = _extract(vendor, body)
                text = server.answer(vendor, question, jpeg, model)
                self._send(200, _reply(vendor, model, text, 100 + len(question.split()), len(text.split())))

            def _send(self, status, payload, headers=()):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in dict(headers).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def url(self, vendor: str) -> str:
        """The base_url each SDK takes for this server."""
        root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        return root + "/v1" if vendor == "openai" else root

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
