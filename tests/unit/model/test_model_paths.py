"""Model files name their preprocessing functions by module path: old paths stay valid."""

from __future__ import annotations

import pickle

from custseg.model import training


def test_a_model_naming_the_old_module_path_still_loads() -> None:
    # what a pipeline pickled before the stage folders holds: a global by module and name
    for name in ("signed_log1p", "clip_z", "as_object"):
        old = pickle.dumps(getattr(training, name), protocol=0).replace(
            b"custseg.model.training", b"custseg.training"
        )
        assert b"custseg.training" in old
        assert pickle.loads(old) is getattr(training, name)
