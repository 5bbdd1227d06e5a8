"""Splits: every row in exactly one slice (or none), customers grouped, seeded, time-aware with dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.card import parse_card
from ml.model.features import label_array
from ml.model.splits import SLICES, make_splits


@pytest.fixture(scope="module")
def data(generated):
    return generated.frame


def _card(default_card_raw, **model):
    raw = default_card_raw()
    raw.setdefault("model", {}).update(model)
    return parse_card(raw)


def test_slices_are_disjoint_and_deterministic(default_card_raw, data):
    card = _card(default_card_raw)
    y = label_array(data, card.label_column)
    a, b = make_splits(data, y, card), make_splits(data, y, card)
    rows = np.concatenate([a.rows(s) for s in SLICES])
    assert len(rows) == len(set(rows.tolist()))
    for s in SLICES:
        np.testing.assert_array_equal(a.rows(s), b.rows(s))
    assert all(len(a.rows(s)) > 0 for s in SLICES)


def test_no_customer_in_two_slices_without_dates(default_card_raw, data):
    raw = default_card_raw()
    raw.pop("date_column", None)
    card = parse_card(raw)
    y = label_array(data, card.label_column)
    sp = make_splits(data, y, card)
    seen = {}
    for s in SLICES:
        for c in data[card.id_column].iloc[sp.rows(s)].unique():
            assert seen.setdefault(c, s) == s, f"customer {c} in {seen[c]} and {s}"
    # without dates every row belongs to its customer's slice
    assert sum(len(sp.rows(s)) for s in SLICES) == len(data)


def test_a_different_seed_gives_different_customers(default_card_raw, data):
    y = label_array(data, "churned")
    a = make_splits(data, y, _card(default_card_raw, seed=1))
    b = make_splits(data, y, _card(default_card_raw, seed=2))
    # the held-out period is every customer's; its never-seen customers depend on the seed
    assert not np.array_equal(a.unseen, b.unseen) and not np.array_equal(a.train, b.train)


def test_held_out_rows_are_not_earlier_than_the_training_rows(default_card_raw, data):
    card = _card(default_card_raw)
    y = label_array(data, card.label_column)
    sp = make_splits(data, y, card)
    d = pd.to_datetime(data[card.date_column])
    assert sp.cutoff is not None
    assert d.iloc[sp.holdout].min() >= pd.Timestamp(sp.cutoff)
    assert d.iloc[sp.train].max() < pd.Timestamp(sp.cutoff)


def test_rows_not_known_yet_change_no_ones_slice(default_card_raw, data):
    """Censored rows (empty label), and customers who have only such rows, take no part in the draw:
    every labelled row lands in the same slice with or without them."""
    card = _card(default_card_raw)
    labelled = data.assign(churned=data["churned"].astype(float))
    newcomers = labelled.head(40).assign(customer_id=[f"NEW{i:03d}" for i in range(40)], churned=np.nan)
    latest = labelled.assign(churned=np.nan).drop_duplicates("customer_id", keep="last")
    with_censored = pd.concat([labelled, newcomers, latest], ignore_index=True)
    a = make_splits(labelled, labelled["churned"].to_numpy(), card)
    b = make_splits(with_censored, with_censored["churned"].to_numpy(), card)
    assert b.censored == 40 + len(latest)
    for s in SLICES:  # the labelled rows come first in with_censored: same positions
        np.testing.assert_array_equal(a.rows(s), b.rows(s), err_msg=s)
    assert not b.customer_slice.index.str.startswith("NEW").any()
