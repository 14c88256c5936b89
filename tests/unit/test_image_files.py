"""What the runtime layer of the flow image is built from: the installed packages' files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

import flow_runtime
from flow_manager import image


def test_the_runtime_layer_has_the_runtime_and_its_example_code():
    files = image.runtime_files()
    assert {"flow_runtime/__init__.py", "flow_runtime/__main__.py", "flow_runtime/framing.py", "code.tar"} <= set(files)
    with tarfile.open(fileobj=io.BytesIO(files["code.tar"])) as tar:
        names = tar.getnames()
        assert "opt/flow/revisions/image/main.py" in names
        assert tar.getmember("opt/flow/code").linkname == "revisions/image"


def test_an_installation_without_the_example_code_says_so_instead_of_a_docker_copy_error(monkeypatch, tmp_path: Path):
    """A wheel that left the example out made `flow-manager serve` fail with Docker's "COPY failed: ...
    stat code: file does not exist"; the cause must be named."""
    package = tmp_path / "flow_runtime"
    package.mkdir()
    for source in Path(flow_runtime.__file__).parent.glob("*.py"):
        (package / source.name).write_bytes(source.read_bytes())
    monkeypatch.setattr(flow_runtime, "__file__", str(package / "__init__.py"))
    with pytest.raises(image.ImageBuildError, match="example"):
        image.runtime_files()
