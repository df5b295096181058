"""Stand-ins for CircleCI's artifacts, laid out exactly as CircleCI ships them:

- the release tarball, circleci-runner_linux_<arch>.tar.gz, with the `circleci-runner` binary at
  its top level (mode 0755), as https://circleci-binary-releases.s3.amazonaws.com/circleci-runner/
  <version>/ serves it (and hostile variants: a symlink, a traversal name, a header that lies
  about the size);
- the `circleci-runner` Debian package from CircleCI's packagecloud repository: /usr/bin/
  circleci-runner, its own circleci-runner.service (User=circleci, restarting), the conffile
  /etc/circleci-runner/circleci-runner-config.yaml (0640, the `<< AUTH_TOKEN >>` placeholder),
  /var/lib/circleci-runner, a postinst that makes the circleci user and enables and starts the
  unit (what the vendor's instructions do by hand: the worst case for a supervisor);
- a signed apt repository serving it (Release/InRelease signed with a key made here; the
  armoured public key at the repository's gpgkey URL, like packagecloud's).

The binary inside is whatever the test gives: the stand-in agent (fake_agent.py) behind a
`#!/bin/sh` wrapper.
"""

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
import time
from pathlib import Path

import world

TARBALL_BASE = "https://circleci-binary-releases.s3.amazonaws.com/circleci-runner"
APT_BASE = "https://packagecloud.io/circleci/runner"
VENDOR_UNIT = """[Unit]
Description=Run the CircleCI self-hosted runner agent
After=network.target

[Service]
ExecStart=/usr/bin/circleci-runner machine -c /etc/circleci-runner/circleci-runner-config.yaml
Restart=always
User=circleci
Environment=HOME=/var/lib/circleci-runner
TimeoutStopSec=18300

[Install]
WantedBy=multi-user.target
"""
VENDOR_CONFFILE = """api:
  auth_token: << AUTH_TOKEN >>
runner:
  name: << RUNNER_NAME >>
  working_directory: /var/lib/circleci-runner/workdir
  cleanup_working_directory: true
"""
VENDOR_POSTINST = """#!/bin/sh
set -e
if ! getent passwd circleci >/dev/null; then
	useradd --system --create-home --home-dir /var/lib/circleci-runner --shell /bin/bash circleci
fi
chown circleci:circleci /etc/circleci-runner/circleci-runner-config.yaml || true
# What CircleCI's instructions do next by hand, done strictly (set -e, no "|| true"): the
# hardest postinst a supervisor could meet. A masked unit fails `enable` here and with it the
# install; runnerd's drop-in (a ConditionPathExists= that fails while runnerd is installed) lets both
# succeed and the start run nothing.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable --now circleci-runner.service
fi
exit 0
"""


def tarball_url(version, arch="%a"):
    return f"{TARBALL_BASE}/{version}/circleci-runner_linux_{arch}.tar.gz"


def _tgz(entries):
    """entries: (TarInfo, bytes or None) -> gzip'd bytes (mtime 0: reproducible)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def _info(name, kind=tarfile.REGTYPE, size=0, link="", mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname, ti.mode = kind, size, link, mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 1700000000
    return ti


def release_tarball(agent):
    """CircleCI's layout: the binary `circleci-runner` at the top level, 0755."""
    return _tgz([(_info("circleci-runner", size=len(agent)), agent)])


def hostile_tarball(kind, agent=b"#!/bin/sh\nexit 0\n"):
    """symlink: circleci-runner -> /bin/sh; traversal: a ../ name beside a good member;
    device: circleci-runner a character device; oversize: a header saying 600 MiB (the archive
    carries none of it: runnerd must refuse at the header)."""
    if kind == "symlink":
        return _tgz([(_info("circleci-runner", tarfile.SYMTYPE, link="/bin/sh"), None)])
    if kind == "traversal":
        return _tgz([(_info("circleci-runner", size=len(agent)), agent),
                     (_info("../../etc/cron.d/runnerd-evil", size=5, mode=0o644), b"evil\n")])
    if kind == "device":
        return _tgz([(_info("circleci-runner", tarfile.CHRTYPE), None)])
    if kind == "oversize":
        header = _info("circleci-runner", size=600 << 20).tobuf(format=tarfile.GNU_FORMAT)
        return gzip.compress(header + b"\0" * 1024, mtime=0)
    raise ValueError(kind)


def vendor_deb(d, agent, version="3.1.4", arch="amd64"):
    """The circleci-runner package, as packagecloud serves it. -> Path of the .deb."""
    root = Path(d) / f"circleci-runner-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    files = {"usr/bin/circleci-runner": (agent, 0o755),
             "usr/lib/systemd/system/circleci-runner.service": (VENDOR_UNIT.encode(), 0o644),
             "etc/circleci-runner/circleci-runner-config.yaml": (VENDOR_CONFFILE.encode(),
                                                                 0o640)}
    for rel, (data, mode) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
    (root / "var/lib/circleci-runner").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: circleci-runner\nVersion: {version}\nArchitecture: {arch}\n"
        "Maintainer: CircleCI (stand-in) <tests@runnerd.invalid>\n"
        "Depends: adduser | passwd\n"
        "Description: CircleCI machine runner (the runnerd tests' stand-in)\n")
    (root / "DEBIAN" / "conffiles").write_text("/etc/circleci-runner/circleci-runner-config.yaml\n")
    post = root / "DEBIAN" / "postinst"
    post.write_text(VENDOR_POSTINST)
    post.chmod(0o755)
    out = Path(d) / f"circleci-runner_{version}_{arch}.deb"
    world.run(["dpkg-deb", "--root-owner-group", "--build", root, out])
    return out


def gpg_key(d):
    """A signing key for the repository: -> (GNUPGHOME, the armoured public key)."""
    home = Path(d) / "gnupg"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    world.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
               "--quick-gen-key", "runnerd tests apt repository <apt@runnerd.invalid>",
               "ed25519", "sign", "2d"], env=env)
    pub = subprocess.run(["gpg", "--batch", "--armor", "--export"], env=env,
                         capture_output=True, check=True, timeout=60).stdout
    return home, pub


def signed_apt_repo(fake, base, debs, gnupghome, suite="any", component="main",
                    arch="amd64"):
    """debs served as a signed apt repository at base (dists/SUITE/{InRelease,Release,
    Release.gpg}, the Packages index, pool/) on the fake's TLS listener. -> the apt_source value
    ("BASE/ SUITE COMPONENT")."""
    stanzas = []
    for deb in map(Path, debs):
        data = deb.read_bytes()
        fields = world.run(["dpkg-deb", "-f", deb]).stdout.rstrip("\n")
        rel = f"pool/{component}/{deb.name}"
        fake.set_blob(f"{base}/{rel}", data, "application/vnd.debian.binary-package")
        stanzas.append(f"{fields}\nFilename: {rel}\nSize: {len(data)}\n"
                       f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    packages = "\n".join(stanzas).encode()
    ppath = f"{component}/binary-{arch}/Packages"
    fake.set_blob(f"{base}/dists/{suite}/{ppath}", packages, "text/plain")
    release = (f"Origin: packagecloud.io/circleci/runner\nLabel: circleci-runner\n"
               f"Suite: {suite}\nCodename: {suite}\n"
               f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
               f"Architectures: {arch}\nComponents: {component}\nSHA256:\n"
               f" {hashlib.sha256(packages).hexdigest()} {len(packages)} {ppath}\n").encode()
    env = {"GNUPGHOME": str(gnupghome), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    inrelease = subprocess.run(["gpg", "--batch", "--clearsign"], input=release, env=env,
                               capture_output=True, check=True, timeout=60).stdout
    detached = subprocess.run(["gpg", "--batch", "--armor", "--detach-sign"], input=release,
                              env=env, capture_output=True, check=True, timeout=60).stdout
    fake.set_blob(f"{base}/dists/{suite}/InRelease", inrelease, "text/plain")
    fake.set_blob(f"{base}/dists/{suite}/Release", release, "text/plain")
    fake.set_blob(f"{base}/dists/{suite}/Release.gpg", detached, "text/plain")
    return f"{base}/ {suite} {component}"
