"""flow-manager's performance benchmark (issue 6).

`python -m bench` starts a real `flow-manager serve`, drives it with real
Socket.IO clients against the real Docker engine, measures the same
operations straight through aiodocker (and bare Socket.IO / AF_UNIX echo
servers) in the same run, prints a table of every target and writes a JSON
file. See docs/performance.md.
"""
