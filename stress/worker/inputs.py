"""Seeded input arrays: the same seed, name and plan give the same bytes on every run."""

from __future__ import annotations

import zlib

import numpy as np

from stress.contract.protocol import InputPlan


def make_input(plan: InputPlan, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(plan.name.encode())])
    dtype = np.dtype(plan.dtype)
    if plan.distribution == "zeros":
        values = np.zeros(plan.shape)
    elif plan.distribution == "ones":
        values = np.ones(plan.shape)
    elif plan.distribution == "uniform":
        values = rng.uniform(-1.0, 1.0, plan.shape)
    else:
        values = rng.standard_normal(plan.shape)
    values = values * plan.scale
    if dtype.kind in "iu":
        values = np.round(values)
    return np.ascontiguousarray(values.astype(dtype))


def make_inputs(plans: list[InputPlan], seed: int) -> list[np.ndarray]:
    return [make_input(plan, seed) for plan in plans]
