#!/usr/bin/python3
"""Owns the given bus names on one connection and answers every method call
with an empty reply: the stand-in daemon for the D-Bus policy test.

Usage: dbus_echo.py ADDRESS NAME [NAME...]
Prints "ready" once every name is owned; exits 3 if a name is refused.
Runs on the system python3 (python3-dbus, python3-gi from Debian).
"""

import sys

import dbus
import dbus.lowlevel
import dbus.mainloop.glib
from gi.repository import GLib


def main():
    address, names = sys.argv[1], sys.argv[2:]
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    for n in names:
        try:
            r = bus.request_name(n, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
        except dbus.exceptions.DBusException as e:
            print(f"refused {n}: {e.get_dbus_name()}", flush=True)
            sys.exit(3)
        if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
            print(f"not owner of {n}: {r}", flush=True)
            sys.exit(3)

    def on_message(conn, msg):
        if isinstance(msg, dbus.lowlevel.MethodCallMessage):
            conn.send_message(dbus.lowlevel.MethodReturnMessage(msg))
            return dbus.lowlevel.HANDLER_RESULT_HANDLED
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED

    bus.add_message_filter(on_message)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
