"""`make chaos`: the real stack as processes under a seeded schedule of faults (issue 13).

chaos/schedule.py decides the faults, chaos/proxy.py cuts and slows TCP, chaos/run.py starts
the stack (settlepay.devstack's recipe and settlepay.processes' supervision), applies the
schedule while chaos/workload.py plays clients, then evaluates the end checks and prints the
table. Not part of `make test`; it must never touch a database or a server it did not create.
"""
