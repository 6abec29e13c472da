"""Where model files trained before the stage folders find their preprocessing functions.

A saved pipeline names each function it calls by module and name; models trained
earlier name ``custseg.training``. This module keeps that name valid, so every stored
champion stays loadable. New models name :mod:`custseg.model.training`.
"""

from custseg.model.training import as_object, clip_z, signed_log1p

__all__ = ["as_object", "clip_z", "signed_log1p"]
