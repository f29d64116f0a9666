"""Machinery every layer shares: the hardware a run uses.

* :mod:`~retina_lib.system.hardware` - the device, seeds, mixed precision and memory format
"""
