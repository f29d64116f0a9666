"""``python -m retina_lib ...`` runs the command line (see :mod:`retina_lib.cli`)."""
from retina_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
