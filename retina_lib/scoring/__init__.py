"""Scoring and using trained networks: prediction at native resolution, and test-split scores.

* :mod:`~retina_lib.scoring.inference` - :func:`predict` for one photograph (tiled when large)
* :mod:`~retina_lib.scoring.evaluation` - :func:`score_network` on a dataset split, inside the FOV
"""
