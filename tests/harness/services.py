"""`scripts/services.sh` from Python: outages of the shared services, and private Resonate servers
whose command line services.sh writes (`resonate-cmd`), so the server's flags live only there."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .endpoints import ROOT, free_port, services_dir

SERVICES_SH = str(ROOT / "scripts" / "services.sh")


def services(*args: str, timeout: float = 240) -> str:
    """`scripts/services.sh ARGS` on the state dir the suite runs against; its stdout."""
    env = {**os.environ, "RECORD_DELETER_SERVICES_DIR": str(services_dir())}
    result = subprocess.run(
        [SERVICES_SH, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"scripts/services.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def require_owned(name: str) -> None:
    owned = os.environ.get("RECORD_DELETER_SERVICES_OWNED", "").split()
    if name not in owned:
        raise AssertionError(
            f"this test stops and restarts {name}, so it needs the {name} that scripts/services.sh "
            f"started (state dir {services_dir()}); RECORD_DELETER_SERVICES_OWNED={' '.join(owned)!r}. "
            "Run it through `make test`, or `scripts/services.sh up` and source its env file"
        )


@contextmanager
def outage(name: str, *, kill: bool = False) -> Iterator[dict[str, float]]:
    """Stop service `name` (SIGKILL with kill=True) for the block; always start it again.

    Yields a dict that gets 'down_at' and, after the block, 'up_at' (time.monotonic()).
    """
    require_owned(name)
    times: dict[str, float] = {}
    services("stop", name, *(["--kill"] if kill else []))
    times["down_at"] = time.monotonic()
    try:
        yield times
    finally:
        last: AssertionError | None = None
        for _ in range(3):
            try:
                services("start", name)
                last = None
                break
            except AssertionError as exc:
                last = exc
                time.sleep(2)
        times["up_at"] = time.monotonic()
        if last is not None:
            raise last


# ------------------------------------------------------------------------ private Resonate servers
class ResonateServer:
    """A Resonate server of its own on 127.0.0.1: SQLite store in `directory` (kept across
    restarts), or the PostgreSQL database `postgres` (postgresql://user:password@host:port/db)."""

    def __init__(
        self,
        directory: Path,
        *,
        api: int | None = None,
        poll: int | None = None,
        postgres: str | None = None,
        binary: str | None = None,
        log: Path | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        """`auth`: (user, password) the server requires on its API and poll port (none: open)."""
        self.directory = directory
        self.auth = auth
        self.api, self.poll_port = api or free_port(), poll or free_port()
        self.log = log or directory / "resonate.log"
        args = [
            "resonate-cmd",
            "--dir",
            str(directory),
            "--api",
            str(self.api),
            "--poll",
            str(self.poll_port),
        ]
        args += ["--postgres", postgres] if postgres else []
        args += ["--auth", f"{auth[0]}:{auth[1]}"] if auth else []
        binary = binary or os.environ.get("SERVICES_RESONATE_BIN")
        args += ["--bin", binary] if binary else []
        result = subprocess.run([SERVICES_SH, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/services.sh resonate-cmd failed: {result.stderr.strip()[-1500:]}")
        self.command = result.stdout.splitlines()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self, timeout: float = 30.0) -> ResonateServer:
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, cwd=self.directory
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"resonate server exited {self._proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"resonate server on :{self.api} not ready after {timeout:.0f}s")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        try:
            request = urllib.request.Request(f"{self.url}/promises?id=*&limit=1")
            if self.auth:
                token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=1) as resp:
                if resp.status != 200:
                    return False
            with socket.create_connection(("127.0.0.1", self.poll_port), timeout=1):
                return True
        except OSError:
            return False

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()

    def wait(self, timeout: float | None = None) -> int:
        assert self._proc is not None
        return self._proc.wait(timeout)

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> ResonateServer:
        return self.start() if self._proc is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def postgres_store_args(db: tuple[str, int, str, str, str]) -> list[str]:
    """`resonate_server`'s store for a PostgreSQL database (host, port, user, password, name)."""
    host, port, user, password, name = db
    quote = urllib.parse.quote
    return [
        "--postgres",
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{name}",
    ]


@contextmanager
def resonate_server(
    binary: str, api: int, poll: int, store: Sequence[str], log: Path
) -> Iterator[ResonateServer]:
    """A private Resonate server on `api`/`poll` for the block (tests that stop or reconfigure it).

    `store`: `postgres_store_args(...)`, or `["--aio-store-sqlite-path", DIR/resonate.db]`: a SQLite
    store in DIR (services.sh keeps it there as resonate.db)."""
    match list(store):
        case ["--postgres", url]:
            directory, postgres = log.parent / f"resonate-{api}", url
        case ["--aio-store-sqlite-path", path] if Path(path).name == "resonate.db":
            directory, postgres = Path(path).parent, None
        case _:
            raise ValueError(f"unsupported Resonate store {store!r}")
    directory.mkdir(parents=True, exist_ok=True)
    with ResonateServer(directory, api=api, poll=poll, postgres=postgres, binary=binary, log=log) as server:
        yield server
