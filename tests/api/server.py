"""Starts `sinkchat serve` on a fresh data folder, as the API tests need it."""

import os
import pathlib
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_FILE = ROOT / ".data/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "SmolLM2-135M-Instruct.Q4_1"


class Serve:
    """A real `sinkchat serve` process on 127.0.0.1 with its own data folder."""

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="sinkchat-api-")
        env = dict(os.environ, SINKCHAT_MODEL=str(MODEL_FILE), RUST_LOG="warn")
        self.proc = subprocess.Popen(
            [str(ROOT / "target/debug/sinkchat"), "serve", "--port", "0", "--data-dir", self.dir.name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.url = self.proc.stdout.readline().strip().rstrip("/")
        assert self.url.startswith("http://127.0.0.1:"), self.url
        about = self.proc.stdout.readline() + self.proc.stdout.readline()
        self.key = about.split("access key: ")[1].split(")")[0]
        # The model loads in the background: wait until the server says it is ready.
        for _ in range(600):
            if "ready" in self.command("app_status")["model"]["state"]:
                break
            time.sleep(0.1)
        return self

    def command(self, name, **args):
        """One of the web UI's commands (what the window's buttons call)."""
        import json
        import urllib.request
        req = urllib.request.Request(
            f"{self.url}/api/{name}", data=json.dumps(args).encode(),
            headers={"content-type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def alive(self):
        return self.proc.poll() is None

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()
