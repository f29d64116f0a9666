"""Root pytest configuration, seen by the unit tests and the notebook run alike.

The notebooks read ``RETINA_SMOKE``: setting it here means a plain ``pytest``
runs every notebook in its small, fast smoke mode and never starts a full
training run. Kernels started by nbval inherit this environment.

The tests train many tiny networks (64 x 64 pictures, batch 1 or 2). At that
size the cost of waking a second OpenMP thread for every operation dominates:
on the 2-core CI machine one LinkNet step on a 64 x 64 picture took 4.6 s with
two threads and 0.12 s with one. So tests (and the notebook kernels they start)
use one thread unless OMP_NUM_THREADS is already set. Real training on
512 x 512 crops is not affected: there two threads are faster.
"""
import os

os.environ.setdefault("RETINA_SMOKE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
