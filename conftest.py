"""Root pytest configuration, seen by the unit tests and the notebook run alike.

The notebooks read ``RETINA_SMOKE``: setting it here means a plain ``pytest``
runs every notebook in its small, fast smoke mode and never starts a full
training run. Kernels started by nbval inherit this environment.
"""
import os

os.environ.setdefault("RETINA_SMOKE", "1")
