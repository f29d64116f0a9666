"""Machinery every layer shares: the hardware a run uses.

* :mod:`~retina_lib.system.hardware` - the device, seeds, mixed precision and memory format
* :mod:`~retina_lib.system.files` - how every file is written: whole, never over what the user owns
"""
