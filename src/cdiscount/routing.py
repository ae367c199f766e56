"""Hierarchical routing maths: coarse probabilities from fine ones, and soft / hard expert routing.

A group expert gives probabilities over its own categories only. Soft routing weights them by
the flat model's total probability of the group (reference report 001's fine-to-coarse
conversion), so a wrong coarse decision costs probability, not the whole answer; hard routing
hands the whole product to the expert of the most probable group, as report 001 did.
Categories outside every group keep the flat model's probabilities.
"""
from __future__ import annotations

import numpy as np


def group_mass(flat: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """[N, G] total flat probability of each group's categories (fine-to-coarse conversion)."""
    return np.stack([flat[:, g].sum(axis=1) for g in groups], axis=1) if groups else np.zeros((len(flat), 0))


def soft_route(flat: np.ndarray, groups: list[np.ndarray], experts: list[np.ndarray]) -> np.ndarray:
    """Each group's mass, redistributed inside the group by its expert. Rows still sum to 1."""
    out = flat.copy()
    mass = group_mass(flat, groups)
    for j, (g, e) in enumerate(zip(groups, experts)):
        out[:, g] = mass[:, j : j + 1] * e
    return out


def hard_route(flat: np.ndarray, groups: list[np.ndarray], experts: list[np.ndarray]) -> np.ndarray:
    """Products whose most probable coarse unit is a group get that group's expert distribution
    alone; the others (most mass outside every group) keep the flat distribution."""
    out = flat.copy()
    if not groups:
        return out
    mass = group_mass(flat, groups)
    rest = 1.0 - mass.sum(axis=1)
    winner = mass.argmax(axis=1)
    routed = mass[np.arange(len(flat)), winner] > rest
    for j, (g, e) in enumerate(zip(groups, experts)):
        rows = routed & (winner == j)
        out[rows] = 0.0
        out[np.ix_(rows, g)] = e[rows]
    return out
