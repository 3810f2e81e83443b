"""What the tests share and are not tests themselves: hypothesis strategies (strategies.py), the
by-hand loops (reference.py), the ONNX cases, fran.optim as it was (legacy_optim.py), a fresh
interpreter (subprocess_python.py), the PyTorch twins of the oracle and the benchmarks, and the
scripts tests run as child processes (*_worker.py, run by path). Tests import them as
`from helpers import strategies` (tests/conftest.py puts tests/ on sys.path)."""
