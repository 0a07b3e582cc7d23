"""A real S3-compatible server (s3rver from npm) on 127.0.0.1 for the integration tests and
benchmarks, plus the environment for the real S3 clients (awscli v2 at /usr/bin/aws, rclone)
and for `cloudyknight workspace ...`.

s3rver is found through CK_S3RVER (set by scripts/test.sh from scripts/s3rver.sh) or the cache
that scripts/s3rver.sh installs into. It needs NODE_OPTIONS=--openssl-legacy-provider on
Node 20. It accepts any keys (it does not check signatures); the suite checks signing in
src/storage/tests/s3_test.cc against AWS's vectors and botocore.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import free_port, port_listening

ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"
REGION = "us-east-1"
AWS = "/usr/bin/aws"  # awscli v2 from Debian; an `aws` earlier on PATH may be an old v1


def s3rver_path():
    p = os.environ.get("CK_S3RVER")
    if p:
        return p
    return os.path.expanduser("~/.cache/cloudyknight/s3rver/node_modules/.bin/s3rver")


class S3Server:
    """One s3rver process with its own data folder. Use start()/stop() or `with`."""

    def __init__(self, extra_args=()):
        self.extra_args = list(extra_args)  # e.g. ["--service-endpoint", "localhost"]
        self.proc = None
        self.port = None
        self.dir = None
        self.log_path = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

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
        self.proc = subprocess.Popen(
            [binary, "--address", "127.0.0.1", "--port", str(self.port), "--directory", data, "--silent",
             *self.extra_args],
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
        self.aws("s3api", "create-bucket", "--bucket", bucket)

    def storage_args(self, bucket, prefix=""):
        """The flags `cloudyknight workspace ...` and `serve` take for this server."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return ["--storage", url, "--s3-endpoint", self.endpoint]
