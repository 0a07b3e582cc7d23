"""A real S3-compatible server (s3rver from npm) on 127.0.0.1 for the integration tests and
benchmarks, plus the environment for the real S3 clients (awscli v2 at /usr/bin/aws, rclone)
and for `cloudyknight workspace ...`.

s3rver is found through CK_S3RVER (set by scripts/test.sh from scripts/s3rver.sh) or the cache
that scripts/s3rver.sh installs into. It needs NODE_OPTIONS=--openssl-legacy-provider on
Node 20. It accepts any keys (it does not check signatures); the suite checks signing in
src/storage/tests/s3_test.cc against AWS's vectors and botocore.
"""

import http.client
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

from harness import free_port, port_listening

ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
REGION = "us-east-1"
MAX_OBJECT_READ = 256 * 1024 * 1024  # what get_object() reads at most
AWS = "/usr/bin/aws"  # awscli v2 from Debian; an `aws` earlier on PATH may be an old v1


def s3rver_path():
    p = os.environ.get("CK_S3RVER")
    if p:
        return p
    return os.path.expanduser("~/.cache/cloudyknight/s3rver/node_modules/.bin/s3rver")


class S3Server:
    """One s3rver process with its own data folder. Use start()/stop() or `with`."""

    def __init__(self, extra_args=(), tls=None):
        self.extra_args = list(extra_args)  # e.g. ["--service-endpoint", "localhost"]
        self.tls = tls  # (cert, key) PEM files: s3rver serves HTTPS itself (cert for IP:127.0.0.1)
        self.proc = None
        self.port = None
        self.dir = None
        self.log_path = None

    @property
    def endpoint(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        binary = s3rver_path()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"s3rver not found at {binary}: run scripts/s3rver.sh or set CK_S3RVER")
        self.dir = tempfile.mkdtemp(prefix="ck-s3rver-")
        self.port = free_port()
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.log_path = os.path.join(self.dir, "s3rver.log")
        log = open(self.log_path, "wb")
        data = os.path.join(self.dir, "data")
        os.mkdir(data)
        tls_args = ["--cert", self.tls[0], "--key", self.tls[1]] if self.tls else []
        self.proc = subprocess.Popen(
            [binary, "--address", "127.0.0.1", "--port", str(self.port), "--directory", data, "--silent",
             *tls_args, *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3rver exited with {self.proc.returncode}: {self.log()}")
            if port_listening(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"s3rver did not listen on 127.0.0.1:{self.port} within {timeout} s")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- clients ------------------------------------------------------------------------------

    def client_env(self, base=None):
        """Environment for aws, rclone and cloudyknight talking to this server. AWS_CA_BUNDLE is
        removed (rclone fails with it set); the config files point nowhere so that a user's
        ~/.aws cannot leak in."""
        env = dict(os.environ if base is None else base)
        env.pop("AWS_CA_BUNDLE", None)
        env.pop("AWS_PROFILE", None)
        if self.tls:
            env["AWS_CA_BUNDLE"] = self.tls[0]
        env.update({
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_PAGER": "",
            "AWS_EC2_METADATA_DISABLED": "true",
            # rclone: an on-the-fly remote named "s3rver"
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_CONFIG_S3RVER_TYPE": "s3",
            "RCLONE_CONFIG_S3RVER_PROVIDER": "Other",
            "RCLONE_CONFIG_S3RVER_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_S3RVER_SECRET_ACCESS_KEY": SECRET_KEY,
            "RCLONE_CONFIG_S3RVER_ENDPOINT": self.endpoint,
            "RCLONE_CONFIG_S3RVER_REGION": REGION,
            "RCLONE_CONFIG_S3RVER_FORCE_PATH_STYLE": "true",
        })
        return env

    def aws(self, *args, check=True, timeout=600):
        """Runs `/usr/bin/aws --endpoint-url ... ARGS`."""
        return subprocess.run([AWS, "--endpoint-url", self.endpoint, *args], env=self.client_env(),
                              capture_output=True, text=True, check=check, timeout=timeout)

    def rclone(self, *args, check=True, timeout=600):
        """Runs `rclone ARGS`; name remote paths `s3rver:BUCKET/PATH`."""
        return subprocess.run(["rclone", *args], env=self.client_env(), capture_output=True,
                              text=True, check=check, timeout=timeout)

    def make_bucket(self, bucket):
        if not self.tls:
            self.aws("s3api", "create-bucket", "--bucket", bucket)
            return
        status, body = self._request("PUT", f"/{bucket}")
        if status != 200:
            raise RuntimeError(f"creating bucket {bucket}: HTTP {status}: {body[:300]!r}")

    # -- plain requests (s3rver takes unsigned ones), for counting and inspecting objects -----

    def _request(self, method, path, body=None, timeout=60):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            data = resp.read(MAX_OBJECT_READ + 1)
            if len(data) > MAX_OBJECT_READ:
                raise RuntimeError(f"{method} {path}: more than {MAX_OBJECT_READ} bytes")
            return resp.status, data
        finally:
            conn.close()

    def list_objects(self, bucket, prefix=""):
        """{key: size} of every object under `prefix` (ListObjectsV2, all pages)."""
        out, token = {}, None
        for _ in range(100_000):  # pages of 1,000
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            status, data = self._request("GET", f"/{bucket}?{urllib.parse.urlencode(q)}")
            if status != 200:
                raise RuntimeError(f"listing s3://{bucket}/{prefix}: HTTP {status}: {data[:300]!r}")
            root = ET.fromstring(data)
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for c in root.findall(f"{ns}Contents"):
                out[c.find(f"{ns}Key").text] = int(c.find(f"{ns}Size").text)
            if root.findtext(f"{ns}IsTruncated") != "true":
                return out
            token = root.findtext(f"{ns}NextContinuationToken")
        raise RuntimeError("listing did not end")

    def get_object(self, bucket, key):
        status, data = self._request("GET", f"/{bucket}/{urllib.parse.quote(key)}")
        if status != 200:
            raise RuntimeError(f"GET s3://{bucket}/{key}: HTTP {status}: {data[:300]!r}")
        return data

    def put_object(self, bucket, key, data):
        status, body = self._request("PUT", f"/{bucket}/{urllib.parse.quote(key)}", body=data)
        if status != 200:
            raise RuntimeError(f"PUT s3://{bucket}/{key}: HTTP {status}: {body[:300]!r}")

    def delete_object(self, bucket, key):
        status, body = self._request("DELETE", f"/{bucket}/{urllib.parse.quote(key)}")
        if status not in (200, 204):
            raise RuntimeError(f"DELETE s3://{bucket}/{key}: HTTP {status}: {body[:300]!r}")

    def storage_args(self, bucket, prefix=""):
        """The flags `cloudyknight workspace ...` and `serve` take for this server."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return ["--storage", url, "--s3-endpoint", self.endpoint]
