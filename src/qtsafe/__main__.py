from __future__ import annotations

from qtsafe.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through `python -m qtsafe`
    main()
