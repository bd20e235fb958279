"""Before/after measurements: load another version of one module in place of the installed one.

    git show b8fdadf:core/src/pannier/store/store.py > /tmp/store_before.py
    PYTHONPATH=$PWD/bench/swap BENCH_SWAP_MODULE=pannier.store.store=/tmp/store_before.py \\
        .venv/bin/pannier bench --database mysql

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``, so the engine subprocess that
``pannier bench`` starts (in another working directory: hence the absolute path) gets the
swapped module too (``pannier bench`` passes every variable
but ``PANNIER_*`` settings on). Not used by Pannier itself.
"""

import importlib.util
import os
import sys

for _item in filter(None, os.environ.get("BENCH_SWAP_MODULE", "").split(",")):
    _name, _path = _item.split("=", 1)
    _spec = importlib.util.spec_from_file_location(_name, _path)
    assert _spec is not None and _spec.loader is not None, _item
    __import__(_name.rpartition(".")[0])  # the parent package first
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _module
    _spec.loader.exec_module(_module)
