"""Point the ROS 2 wheels' exported CMake include paths at this interpreter's headers.

The PyPI ROS 2 wheels were built in a manylinux image, so each message package's
export_*__rosidl_generator_pyExport.cmake names /opt/python/... include folders that do not exist
here; building our own messages against them fails until they name the local Python and numpy
headers. Idempotent: rewrites only files that still differ.
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

_INCLUDES = re.compile(r'INTERFACE_INCLUDE_DIRECTORIES "[^"]*"')


def patch(prefix: Path) -> int:
    """Rewrite the include directories of every exported rosidl_generator_py target under prefix."""
    wanted = f'INTERFACE_INCLUDE_DIRECTORIES "{sysconfig.get_path("include")};{numpy.get_include()}"'
    changed = 0
    for path in prefix.glob("share/*/cmake/export_*__rosidl_generator_pyExport.cmake"):
        text = path.read_text()
        new = _INCLUDES.sub(wanted, text)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    print(f"patched {patch(Path(sys.prefix))} exported CMake file(s) of the ROS 2 wheels")
