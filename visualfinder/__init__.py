"""visualfinder: visual product search over a local image catalog."""

import os

# OpenMP workers spin at every barrier by default. Beside our decode threads, or on a machine
# busy with anything else, one preempted worker keeps the others spinning for a whole time
# slice: on a loaded 2-core host a batch-1 query took 4.5-7.6 s with spinning and 0.3 s
# without, and `index` on the process main thread ran 3-6x slower. The process holds more than
# one OpenMP runtime (torch's libgomp, and numkong's own copy that usearch loads), and each
# reads the variable once, when it is loaded: so it is set here, before any submodule imports
# a native library. A user's own OMP_WAIT_POLICY wins (tests/benchmarks/test_omp_wait.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
