import pytest
import torch

# Every device-parametrised test runs on these; CUDA joins where a GPU and the CUDA kernels exist.
DEVICES = ["cpu"]
if torch.cuda.is_available():
    DEVICES.append("cuda")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
