"""Server processes for tests and benchmarks: `jxcbot serve` (or any script) started, awaited and stopped."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

BOT_SERVER = "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, url: str, port: int, fake: Any, token: str, aes_key: str,
                 outbox: Mapping[str, float | int] | None = None, workers: int = 1) -> str:
    """A jxcbot.toml for a server on 127.0.0.1:port, the database `url` and a fake WeCom; returns its path."""
    lines = ["[database]", f"url = {json.dumps(url)}", "[server]", 'host = "127.0.0.1"', f"port = {port}",
             *(["reuse_port = true"] if workers > 1 else []),
             "[wecom]", f"corp_id = {json.dumps(fake.corp_id)}", f"agent_id = {fake.agent_id}",
             f"secret = {json.dumps(fake.secret)}", f"token = {json.dumps(token)}",
             f"encoding_aes_key = {json.dumps(aes_key)}", f"api_base = {json.dumps(fake.base_url)}"]
    if outbox:
        lines += ["[outbox]", *(f"{k} = {v}" for k, v in outbox.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


_LOGS: dict[int, Path] = {}


def log_path(proc: asyncio.subprocess.Process) -> Path:
    """The file a process started by `spawn` writes its stderr to."""
    return _LOGS[proc.pid]


def log_text(proc: asyncio.subprocess.Process) -> str:
    """What the process has written to stderr so far."""
    return log_path(proc).read_text(encoding="utf-8", errors="replace")


async def spawn(args: Sequence[str], health: str, *, want_ok: bool = False,
                seconds: float = 30.0) -> asyncio.subprocess.Process:
    """Start `python args…` and wait until `health` answers (with 200 when want_ok, else any HTTP status).

    AssertionError with the process's stderr when it exits first or does not answer in time. Its stderr goes
    to a file (`log_path(proc)`), not a pipe: a pipe nobody reads blocks a chatty server once it is full."""
    with tempfile.NamedTemporaryFile(prefix="jxcbot-server-", suffix=".log", delete=False) as err:
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=err)
    _LOGS[proc.pid] = Path(err.name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(health) as r:
                    if r.status == 200 or not want_ok:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                text = log_text(proc)[-2000:]
                _LOGS.pop(proc.pid).unlink(missing_ok=True)
                raise AssertionError("server process exited: " + text)
            await asyncio.sleep(0.05)
    proc.kill()
    await proc.wait()
    text = log_text(proc)[-2000:]
    _LOGS.pop(proc.pid).unlink(missing_ok=True)
    raise AssertionError(f"server process did not answer at {health}: {text}")


async def serve_bot(config: str, port: int) -> asyncio.subprocess.Process:
    """`jxcbot --config CONFIG serve` in its own process, once its /healthz answers 200."""
    return await spawn(["-c", BOT_SERVER, "--config", config, "serve"], f"http://127.0.0.1:{port}/healthz",
                       want_ok=True)


async def stop(proc: asyncio.subprocess.Process, seconds: float = 60.0, *, keep_log: bool = False) -> Path | None:
    """SIGTERM (the bot finishes its handlers and outbox first) and wait; SIGKILL after `seconds`. Its stderr
    file is removed, unless keep_log: then its path is returned (the caller removes it)."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), seconds)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    path = _LOGS.pop(proc.pid, None)
    if path is not None and not keep_log:
        path.unlink(missing_ok=True)
        return None
    return path
