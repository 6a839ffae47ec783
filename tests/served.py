"""A viewer served over real HTTP for the tests: uvicorn on a free port of 127.0.0.1, in a thread of the test's
process."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import uvicorn

from render.viewer import create_app


class Server:
    """A viewer listening on 127.0.0.1 in a thread of this process."""

    def __init__(self, folders: list[Path]) -> None:
        self.server = uvicorn.Server(uvicorn.Config(create_app(folders), host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the viewer did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body of ``GET path``, the path sent exactly as given (no normalising)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.getheader("content-type", ""), response.read()
        finally:
            connection.close()

    def json(self, path: str, status: int = 200) -> object:
        got, kind, body = self.get(path)
        assert (got, kind) == (status, "application/json"), (path, got, body[:500])
        return json.loads(body)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
