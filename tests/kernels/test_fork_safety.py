"""Fork safety of the Numba kernels (issue #12, part 7).

Numba's default threading layer on Linux without TBB is GNU OpenMP, which is not fork-safe: after
a parallel kernel ran in the parent, a ``fork``-started ``multiprocessing`` worker that calls a
parallel kernel is terminated by Numba and the pool waits for it for ever. Importing
``refimpl.kernels`` asks for Numba's ``"forksafe"`` layer (TBB if installed, else ``workqueue``),
and ``workqueue`` — not thread-safe — is guarded by a kernel lock in ``dispatch``.

Every wait has a timeout, so a regression fails these tests instead of hanging the suite. The
fresh-interpreter checks run in a subprocess (``sys.executable``), whose import order and
environment they control.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from refimpl.kernels import threading_layer_status as _status

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="the fork start method (Linux)")

TIMEOUT = 60  # seconds: generous for a 2-core machine busy with other tests

# Big enough that each kernel takes its multithreaded path (PARALLEL_MIN_WORK = 2**16 for the
# ``prange`` kernels; the CSR SpMV's two-thread team from SPMV_PARALLEL_MIN_NNZ = 2**17).
_N = 400


def _operands():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((_N, _N))  # dense: nnz = 160000 >= PARALLEL_MIN_WORK
    x = rng.standard_normal(_N)
    return W, x


def _kernel_call(i: int) -> tuple[float, float, int]:
    """Run three multithreaded kernels (CSR SpMV through its thread team, BSR SpMM and binary
    GEMM under Numba's ``prange``); module-level so a forked worker can call it by reference."""
    from refimpl.kernels.bitpack import binary_matmul
    from refimpl.kernels.block_sparse import bsr_from_dense, bsr_matmat
    from refimpl.kernels.sparse import csr_from_dense, csr_matvec

    W, x = _operands()
    y = csr_matvec(csr_from_dense(W), x * i, backend="numba")
    Y = bsr_matmat(bsr_from_dense(W, (4, 4)), np.stack([x, x * i], 1), backend="numba")
    C = binary_matmul(W[:256], W[:300], backend="numba")  # >= 256 x 64: the table kernel
    return float(y.sum()), float(Y[:, 1].sum()), int(C.sum())


def _expected(i: int) -> tuple[float, float, int]:
    W, x = _operands()
    S = np.where(W >= 0, 1, -1)
    return float((W @ (x * i)).sum()), float((W @ (x * i)).sum()), int((S[:256] @ S[:300].T).sum())


def _check(got, i):
    exp = _expected(i)
    scale = np.abs(_operands()[0]).sum() * np.abs(_operands()[1]).max() * max(i, 1)
    assert abs(got[0] - exp[0]) <= 1e-12 * scale
    assert abs(got[1] - exp[1]) <= 1e-12 * scale
    assert got[2] == exp[2]


def test_fork_pool_after_a_parallel_kernel_ran_in_the_parent():
    # the parent runs the kernels first (starting Numba's thread pool), then forks workers
    # that run them again: with GNU OpenMP the workers were killed and map() never returned
    _check(_kernel_call(1), 1)
    status = _status()
    assert status["active"] is not None
    if status["action"] == "set forksafe":
        assert status["active"] in ("tbb", "workqueue"), status
    elif status["active"] == "omp":  # the user (environment) chose OpenMP: not ours to fix
        pytest.skip(f"NUMBA_THREADING_LAYER chose {status['active']!r} for this process")
    ctx = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork of a threaded process
        with ctx.Pool(2) as pool:
            res = pool.map_async(_kernel_call, [0, 2, 3, 5])
            try:
                got = res.get(timeout=TIMEOUT)
            except multiprocessing.TimeoutError:
                pool.terminate()
                pytest.fail(f"fork-started workers hung calling a parallel kernel ({status})")
    for i, g in zip([0, 2, 3, 5], got):
        _check(g, i)


def _run_script(code: str, env_overrides: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    env.update(env_overrides or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=3 * TIMEOUT)


_FRESH = """
    import multiprocessing, sys, numba, numpy as np
    import refimpl.kernels.bitpack  # importing must not start Numba's threads
    try:
        numba.threading_layer()
        print("THREADS STARTED BY IMPORT")
        sys.exit(3)
    except ValueError:
        pass
    from refimpl.kernels.sparse import csr_from_dense, csr_matvec
    A = csr_from_dense(np.ones((400, 400)))

    def f(i):
        return float(csr_matvec(A, np.full(400, float(i)), backend="numba").sum())

    if __name__ == "__main__":
        assert f(1) == 160000.0
        print("LAYER", numba.threading_layer())
        with multiprocessing.get_context("fork").Pool(2) as p:
            print("RESULT", p.map_async(f, [0, 1, 2]).get(timeout=%d))
""" % TIMEOUT


def test_fresh_interpreter_import_starts_no_threads_and_forks_safely():
    r = _run_script(_FRESH)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "RESULT [0.0, 160000.0, 320000.0]" in r.stdout
    layer = r.stdout.split("LAYER ")[1].split()[0]
    assert layer in ("tbb", "workqueue"), r.stdout


def test_an_explicit_user_choice_of_layer_is_kept():
    r = _run_script("""
        import numpy as np, numba
        from refimpl.kernels import threading_layer_status
        from refimpl.kernels.sparse import csr_from_dense, csr_matvec
        csr_matvec(csr_from_dense(np.ones((400, 400))), np.ones(400), backend="numba")
        s = threading_layer_status()
        print(s["requested"], s["action"], s["active"])
    """, {"NUMBA_THREADING_LAYER": "workqueue"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["workqueue", "user", "choice", "kept", "workqueue"]


def test_parallel_kernels_from_several_threads_do_not_abort():
    # workqueue aborts the whole process when two threads launch parallel kernels at once
    # ("Concurrent access has been detected"); dispatch's kernel lock serialises them
    r = _run_script("""
        import threading, numpy as np
        from refimpl.kernels.sparse import csr_from_dense, csr_matvec
        from refimpl.kernels.attention import sliding_window_attention
        A = csr_from_dense(np.ones((400, 400)))
        Q = np.random.default_rng(0).standard_normal((1, 2, 512, 16))
        ref = sliding_window_attention(Q, Q, Q, 32, backend="numpy")
        bad = []

        def work(t):
            for i in range(30):
                if csr_matvec(A, np.full(400, 1.0 * t), backend="numba").sum() != 160000.0 * t:
                    bad.append(("spmv", t, i))
                if i % 10 == 0:
                    out = sliding_window_attention(Q, Q, Q, 32, backend="numba")
                    if not np.abs(out - ref).max() < 1e-12:
                        bad.append(("swa", t, i))

        ts = [threading.Thread(target=work, args=(t,)) for t in (1, 2, 3)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        print("BAD", bad)
    """)
    assert r.returncode == 0, r.stdout + r.stderr  # an abort gives SIGABRT (-6)
    assert "BAD []" in r.stdout, r.stdout
