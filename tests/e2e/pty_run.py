#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal of a set window size, as a user's terminal.

  pty_run.py COLS ROWS [--resize-on TEXT COLS2 ROWS2] -- COMMAND...

The command's terminal output goes to stdout (CR LF as the terminal wrote it); the
exit status is the command's. With --resize-on, the window becomes COLS2 x ROWS2 once
TEXT appeared in the output (the command gets SIGWINCH, as from a resized window).
Input: none; the terminal stays open until the command exits. A bound of 600 s ends a
hang (the command is killed, status 124).
"""
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 4:
        sys.exit("usage: pty_run.py COLS ROWS [--resize-on TEXT COLS2 ROWS2] -- COMMAND...")
    split = args.index("--")
    opts, command = args[:split], args[split + 1:]
    cols, rows = int(opts[0]), int(opts[1])
    resize = None
    if len(opts) == 6 and opts[2] == "--resize-on":
        resize = (opts[3].encode(), int(opts[4]), int(opts[5]))
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    set_size(master, cols, rows)
    # The child may start before the size is set: tell it, as a window change would.
    os.kill(pid, signal.SIGWINCH)
    seen = b""
    deadline = time.monotonic() + 600
    while True:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.exit(124)
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        if resize:
            seen += data
            if resize[0] in seen:
                set_size(master, resize[1], resize[2])
                os.kill(pid, signal.SIGWINCH)
                resize = None
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
             else (status >> 8))


if __name__ == "__main__":
    main()
