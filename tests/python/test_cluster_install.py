"""The test cluster's server binaries where its OS user can run them.

As root, the server runs as ``postgres``; binaries the ``postgres`` user cannot reach (a
virtualenv in a 0700 directory, such as /root or ``mktemp -d``) are copied once, with their
installation, into a directory it can traverse.
"""

from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from routing_ledger.testing.cluster import SERVER_OS_USER, _reachable_by, _reachable_install


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another OS user only as root")
def test_an_unreachable_installation_is_copied_where_the_server_user_reaches_it() -> None:
    pw = pwd.getpwnam(SERVER_OS_USER)
    gids = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    with tempfile.TemporaryDirectory() as private:  # 0700, owned by root
        install = Path(private) / "pginstall"
        (install / "bin").mkdir(parents=True)
        (install / "share" / "extension").mkdir(parents=True)
        (install / "bin" / "initdb").write_text("#!/bin/sh\n")
        (install / "bin" / "initdb").chmod(0o755)
        (install / "share" / "extension" / "pgtap.control").write_text("x")
        bindir = install / "bin"
        assert not _reachable_by(bindir, pw.pw_uid, gids)

        copy = _reachable_install(bindir, Path("/tmp"))
        assert _reachable_by(copy, pw.pw_uid, gids)
        assert copy.name == "bin" and (copy / "initdb").stat().st_mode & 0o111
        assert (copy.parent / "share" / "extension" / "pgtap.control").read_text() == "x"
        assert _reachable_install(bindir, Path("/tmp")) == copy, "copied once per process"
