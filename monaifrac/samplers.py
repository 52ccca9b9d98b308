"""Which training films an epoch visits."""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["FracturedAndNormalsSampler"]


class FracturedAndNormalsSampler(Sampler[int]):
    """Every fractured film once per epoch, and a fresh random draw of the normal films.

    The two shared folders hold 4.8 normal films for each fractured one. An epoch of all of them
    spends most of its time on films with no fracture pixel; an epoch of the fractured films and
    as many normals (``normals_per_fractured=1``) is 2.9 times shorter, and over epochs the draws
    still cover every normal film, which the presence output needs.

    Args:
        data: the datalist (items with a boolean ``fractured``; where an item has none, every film
            is visited each epoch).
        normals_per_fractured: normal films drawn per fractured film each epoch (at most all).
        generator: a ``torch.Generator``; None draws from torch's global generator each epoch,
            as ``RandomSampler`` does, so ``set_determinism`` and exact resume govern it.
        small_fraction, small_repeats: a fractured film whose fracture covers less than
            ``small_fraction`` of its pixels (the item's ``fracture_fraction``, written by
            ``monaifrac prepare``) is visited ``small_repeats`` times an epoch instead of once: the
            network misses small fractures first. None (default): every fractured film once.

    Iterating yields dataset indices, shuffled; ``len`` is the epoch's number of films.
    """

    def __init__(self, data: Sequence[Mapping], normals_per_fractured: float = 1.0,
                 generator: torch.Generator | None = None, small_fraction: float | None = None,
                 small_repeats: int = 2):
        if normals_per_fractured < 0:
            raise ValueError(f"normals_per_fractured must be >= 0, got {normals_per_fractured}")
        if small_repeats < 1:
            raise ValueError(f"small_repeats must be >= 1, got {small_repeats}")
        self.generator = generator
        if any("fractured" not in d for d in data):
            # a datalist that does not say which films are fractured (MONAI Label's datastore, a user's
            # own): every film every epoch, shuffled, as DataLoader(shuffle=True) would
            self.fractured, self.normals, self.n_normals = list(range(len(data))), [], 0
            return
        self.fractured = [i for i, d in enumerate(data) if bool(d["fractured"])]
        self.normals = [i for i, d in enumerate(data) if not bool(d["fractured"])]
        self.n_normals = min(len(self.normals), int(round(normals_per_fractured * len(self.fractured))))
        if small_fraction is not None:
            if any(bool(data[i]["fractured"]) and "fracture_fraction" not in data[i] for i in self.fractured):
                raise ValueError("small_fraction needs each fractured item's fracture_fraction: prepare the "
                                 "dataset again with this version of `monaifrac prepare`")
            small = [i for i in self.fractured if float(data[i]["fracture_fraction"]) < small_fraction]
            self.fractured = self.fractured + small * (small_repeats - 1)

    def __len__(self) -> int:
        return len(self.fractured) + self.n_normals

    def __iter__(self) -> Iterator[int]:
        g = self.generator
        if g is None:
            g = torch.Generator()
            g.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        normals = torch.tensor(self.normals, dtype=torch.int64)[torch.randperm(len(self.normals), generator=g)]
        chosen = torch.cat([torch.tensor(self.fractured, dtype=torch.int64), normals[: self.n_normals]])
        yield from chosen[torch.randperm(len(chosen), generator=g)].tolist()
