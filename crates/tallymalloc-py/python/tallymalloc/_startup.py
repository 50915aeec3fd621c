"""Installs tallymalloc at interpreter start-up when ``TALLYMALLOC_PYTHON`` asks for it.

``tallymalloc-startup.pth`` imports this module only when the variable is set: ``1`` installs
the default domains, a comma-separated list (``raw,mem``) installs those, ``0`` nothing. A
bad value or a failure is reported on stderr and start-up carries on without tallymalloc.
"""

import os
import sys


def _install_from_environment() -> None:
    value = os.environ.get("TALLYMALLOC_PYTHON", "").strip()
    if value in ("", "0"):
        return
    try:
        import tallymalloc

        tallymalloc.install(None if value == "1" else [d.strip() for d in value.split(",")])
    except Exception as error:  # start-up must go on: say why tallymalloc is not installed
        print(f"tallymalloc: TALLYMALLOC_PYTHON={value}: not installed: {error}", file=sys.stderr)


_install_from_environment()
