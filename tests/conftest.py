import os
import zlib

import pytest
import torch

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the test extra has it; without it only the property tests skip
    settings = None

# Every device-parametrised test runs on these; CUDA joins where a GPU and the CUDA kernels exist.
DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]

# Property tests (hypothesis). No deadline: nothing here is a timed test, and the sanitizer build
# runs the same examples several times slower; an example builds tensors of up to 100,000
# elements, so the too_slow health check (example generation) is not a sign of a wrong strategy.
if settings is not None:
    _COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
    # "ci" (the default): a fixed, modest number of examples, the same ones on every run
    # (derandomize), so the whole suite stays within a few minutes and CI is reproducible.
    settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_COMMON)
    # "long": many random examples, for a run by hand: HYPOTHESIS_PROFILE=long python -m pytest
    # tests/test_properties.py (failures are kept in .hypothesis/ and replayed first next time).
    settings.register_profile("long", max_examples=5000, **_COMMON)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _seeded(request):
    """Seeds the global RNG from the test's id: a draw without a generator is then the same on
    every run and in any order of the tests, so a failure replays."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
