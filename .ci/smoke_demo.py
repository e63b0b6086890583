"""Release smoke test: run ``cachekit demo`` from an installed wheel and fetch its pages.

Run by .ci/release with the clean venv's Python, from a directory outside the
checkout so that only the installed packages can be imported. Standard library only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(url: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, dict(response.headers), response.read().decode()


def main() -> int:
    import cachekit

    here = Path(cachekit.__file__).resolve()
    assert "site-packages" in here.parts, f"cachekit imported from {here}, not from the installed wheel"
    script = Path(sys.executable).with_name("cachekit")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"cachekit {cachekit.__version__}", version.stdout
    port = free_port()
    server = subprocess.Popen([str(script), "demo", "--port", str(port)], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                raise SystemExit(f"cachekit demo exited with {server.returncode}")
            try:
                status, _, body = fetch(base + "/")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("cachekit demo did not answer within 20 s") from None
                time.sleep(0.1)
        assert status == 200, status
        assert "cachekit" in body, body[:200]
        first = fetch(base + "/cached")[1].get("X-Cache")
        second = fetch(base + "/cached")[1].get("X-Cache")
        assert (first, second) == ("MISS", "HIT"), (first, second)
        for asset in ("/static/app.js", "/static/style.css", "/favicon.ico"):
            assert fetch(base + asset)[0] == 200, asset  # package data made it into the wheel
        stats = json.loads(fetch(base + "/stats.json")[2])
        assert stats["pages"]["hits"] >= 1, stats
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(
        f"release smoke: cachekit {cachekit.__version__} from {here.parent}: served /, /cached MISS then HIT"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
