"""Default code of flow:latest: echoes every message back.

Replace it with `update_container` (or `code_path` at create time): any
directory with a main.py that defines handle(message) will do.
"""


def handle(message):
    return {"command": "echo", "data": message}
