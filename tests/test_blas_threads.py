"""The indexer's BLAS threads (mlcl_executor/blas_threads.py): one for a small search, all for a large one."""

from __future__ import annotations

import numpy as np
import pytest

from mlcl_executor.blas_threads import BlasThreads


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_small_products_run_on_one_thread_large_ones_on_all():
    np.ones(4) @ np.ones(4)  # numpy's BLAS is loaded
    auto = BlasThreads("auto", min_work=1000)
    try:
        auto.for_work(999)
        assert blas_threads() == 1
        auto.for_work(1000)
        assert blas_threads() == auto.max
    finally:
        auto.for_work(10**12)  # leave the process as it was


def test_a_fixed_count_caps_large_products_and_none_leaves_numpy_alone():
    before = blas_threads()
    BlasThreads(None).for_work(10**12)
    assert blas_threads() == before
    one = BlasThreads(1, min_work=0)
    one.for_work(10**12)
    assert blas_threads() == 1
    BlasThreads("auto").for_work(10**12)  # restore
    assert blas_threads() == before


@pytest.mark.parametrize("bad", [0, -1, "many", True, 2.5])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="blas_threads"):
        BlasThreads(bad)
