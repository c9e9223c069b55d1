#!/usr/bin/env python3
"""cpu_of.py OUT CMD...: runs CMD (stdout/stderr passed through) and writes the CPU
seconds (user + system) it and its children used to OUT; exits with CMD's status."""
import os
import subprocess
import sys

out, cmd = sys.argv[1], sys.argv[2:]
status = subprocess.call(cmd)
usage = os.times()
with open(out, "w") as f:
    f.write(f"{usage.children_user + usage.children_system:.3f}\n")
sys.exit(status)
