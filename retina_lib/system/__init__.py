"""Machinery every layer shares: the hardware a run uses, and how files are written.

* :mod:`~retina_lib.system.hardware` - the device, seeds, mixed precision and memory format
"""
