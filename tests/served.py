"""A viewer served over real HTTP for the tests: uvicorn on a free port of 127.0.0.1, in a thread of the test's
process, with ``create_app``'s options (render ``jobs``, ``training``); requests are sent exactly as given (paths
unnormalised, bodies as they are)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from render.viewer import create_app


class Server:
    """A viewer listening on 127.0.0.1 in a thread of this process; :meth:`stop` closes it (its lifespan cancels
    render jobs and stops trainers)."""

    def __init__(self, folders: list[Path], **options: Any) -> None:
        app = create_app(folders, **options)
        self.training = options.get("training")
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the viewer did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        """The response to ``method path`` with ``body`` (bytes as given, anything else as JSON), its bytes read
        into ``response.body``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            response.body = response.read()  # type: ignore[attr-defined]
            return response
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body of ``GET path``."""
        response = self.request("GET", path)
        return response.status, response.getheader("content-type", ""), response.body  # type: ignore[attr-defined]

    def json(self, path: str, status: int = 200) -> Any:
        """The JSON of ``GET path``, which must answer ``status``."""
        return self.call("GET", path, status=status)

    def call(self, method: str, path: str, body: object = None, status: int = 200) -> Any:
        """The JSON answer of ``method path``, which must answer ``status``."""
        response = self.request(method, path, body)
        content = response.body  # type: ignore[attr-defined]
        assert response.status == status, (method, path, response.status, content[:800])
        assert response.getheader("content-type") == "application/json", (method, path, content[:200])
        return json.loads(content)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
