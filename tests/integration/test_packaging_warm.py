"""runnerd.service and warm pools, read as systemd reads it (packaging/systemd): the stop that
moves an instance into its warm pool must stay a plain stop. runnerd exits 0 on SIGTERM while it
prepares or waits in the pool (test_runnerd_warm.py, test_default_path_warm.py, and the e2e
boot's ACPI shutdown), so the unit must add nothing that acts on a stop: no ExecStop= or
ExecStopPost= (Buildkite's terminate-on-ExecStopPost turned each stop into a terminate and a
replacement, in a loop), no restart, its OnFailure= only for failures. state_dir's default is
the unit's StateDirectory=, runnerd's alone. (systemd-analyze verify of the installed unit is
in test_packaging.py.)"""

from conftest import REPO

UNIT = REPO / "packaging" / "systemd" / "runnerd.service"


def service_keys():
    keys, section = [], None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        keys.append((section, k.strip(), v.strip()))
    return keys


def test_nothing_acts_on_a_stop():
    keys = service_keys()
    names = {k for s, k, _ in keys if s == "Service"}
    assert not names & {"ExecStop", "ExecStopPost", "ExecReload"}, names
    assert ("Service", "Restart", "no") in keys
    assert ("Unit", "OnFailure", "runnerd-failed.service") in keys
    assert not {k for s, k, _ in keys if s == "Unit"} & {"FailureAction", "SuccessAction"}


def test_state_directory_is_state_dirs_default():
    keys = service_keys()
    assert ("Service", "StateDirectory", "runnerd") in keys
    assert ("Service", "StateDirectoryMode", "0700") in keys
    conf = (REPO / "packaging" / "etc" / "runnerd.conf").read_text()
    assert ";state_dir = /var/lib/runnerd\n" in conf
