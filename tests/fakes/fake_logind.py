#!/usr/bin/python3
"""A stand-in for systemd-logind on a private system bus: owns org.freedesktop.login1 and
answers org.freedesktop.login1.Manager.PowerOff(b) (and Reboot(b)) at /org/freedesktop/login1
the way logind does for root: an empty reply. Each call is appended to RECORD as one JSON line
{"method", "interactive", "uid"} (the caller's uid, asked of the bus) before the reply goes out,
so a test that sees its caller finish finds the call recorded.

usage: fake_logind.py BUS_ADDRESS RECORD
Prints READY once it owns the name (the test's handshake). Needs python3-dbus and python3-gi.
"""

import json
import sys

import dbus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

NAME = "org.freedesktop.login1"
PATH = "/org/freedesktop/login1"
IFACE = "org.freedesktop.login1.Manager"


class Manager(dbus.service.Object):
    def __init__(self, bus, record):
        super().__init__(bus, PATH)
        self.bus = bus
        self.record = record

    def _note(self, method, interactive, sender):
        uid = int(self.bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                         "org.freedesktop.DBus", "GetConnectionUnixUser", "s",
                                         [sender]))
        with open(self.record, "a") as f:
            f.write(json.dumps({"method": method, "interactive": bool(interactive),
                                "uid": uid}) + "\n")

    @dbus.service.method(IFACE, in_signature="b", out_signature="", sender_keyword="sender")
    def PowerOff(self, interactive, sender=None):  # noqa: N802 (the D-Bus name)
        self._note("PowerOff", interactive, sender)

    @dbus.service.method(IFACE, in_signature="b", out_signature="", sender_keyword="sender")
    def Reboot(self, interactive, sender=None):  # noqa: N802
        self._note("Reboot", interactive, sender)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(argv[1])
    name = dbus.service.BusName(NAME, bus, do_not_queue=True)  # noqa: F841 (kept alive)
    Manager(bus, argv[2])
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
