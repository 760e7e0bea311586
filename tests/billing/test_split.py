"""The largest-remainder split: exact totals, fair parts, same answer every time."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fetlock.billing.split import ShareError, split_amount
from fetlock.practice.models import FULL_SHARE


@st.composite
def shares_summing_to_full(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Between 1 and 12 owners with positive shares adding up to 100 %."""
    count = draw(st.integers(min_value=1, max_value=12))
    cuts = sorted(
        draw(
            st.lists(
                st.integers(min_value=1, max_value=FULL_SHARE - 1),
                min_size=count - 1,
                max_size=count - 1,
                unique=True,
            )
        )
    )
    bounds = [0, *cuts, FULL_SHARE]
    shares = [high - low for low, high in zip(bounds, bounds[1:], strict=False)]
    owner_ids = draw(
        st.lists(
            st.integers(min_value=1, max_value=10**6),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    return list(zip(owner_ids, shares, strict=True))


amounts = st.integers(min_value=1, max_value=10**9)

# No per-example deadline: the machine's load must not decide a pass.
untimed = settings(deadline=None)


@untimed
@given(amounts, shares_summing_to_full())
def test_split_parts_add_up_to_the_total(
    amount: int, shares: list[tuple[int, int]]
) -> None:
    parts = split_amount(amount, shares)
    assert sum(parts.values()) == amount
    assert set(parts) == {owner for owner, _ in shares}


@untimed
@given(amounts, shares_summing_to_full())
def test_split_parts_are_non_negative_and_within_one_unit(
    amount: int, shares: list[tuple[int, int]]
) -> None:
    parts = split_amount(amount, shares)
    for owner, share in shares:
        exact = Fraction(amount * share, FULL_SHARE)
        assert parts[owner] >= 0
        assert abs(parts[owner] - exact) < 1


@untimed
@given(amounts, shares_summing_to_full())
def test_split_rounds_up_the_largest_remainders(
    amount: int, shares: list[tuple[int, int]]
) -> None:
    parts = split_amount(amount, shares)
    rank = {}
    for owner, share in shares:
        remainder = (amount * share) % FULL_SHARE
        # Larger remainder first, then larger share, then lower owner id.
        rank[owner] = (-remainder, -share, owner)
    rounded_up = [o for o, s in shares if parts[o] * FULL_SHARE > amount * s]
    rounded_down = [o for o, s in shares if parts[o] * FULL_SHARE <= amount * s]
    if rounded_up and rounded_down:
        assert max(rank[o] for o in rounded_up) < min(rank[o] for o in rounded_down)


@untimed
@given(amounts, shares_summing_to_full(), st.randoms(use_true_random=False))
def test_split_is_the_same_whatever_the_order_of_owners(
    amount: int, shares: list[tuple[int, int]], random: object
) -> None:
    shuffled = list(shares)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert split_amount(amount, shuffled) == split_amount(amount, shares)


@untimed
@given(amounts, shares_summing_to_full())
def test_split_of_a_credit_mirrors_the_charge(
    amount: int, shares: list[tuple[int, int]]
) -> None:
    charge = split_amount(amount, shares)
    credit = split_amount(-amount, shares)
    assert {owner: -part for owner, part in credit.items()} == charge


def test_split_gives_the_spare_unit_to_the_largest_remainder() -> None:
    # 100 by 50/30/20 is exact; 101 leaves one unit with remainders
    # 0.5 / 0.3 / 0.2: it goes to the 50 % owner.
    assert split_amount(100, [(1, 5000), (2, 3000), (3, 2000)]) == {1: 50, 2: 30, 3: 20}
    assert split_amount(101, [(1, 5000), (2, 3000), (3, 2000)]) == {1: 51, 2: 30, 3: 20}
    # 1 by 20/30/50: remainders 0.2 / 0.3 / 0.5.
    assert split_amount(1, [(7, 2000), (8, 3000), (9, 5000)]) == {7: 0, 8: 0, 9: 1}


def test_split_breaks_ties_by_larger_share_then_lower_owner_id() -> None:
    # Thirds: 33.34/33.33/33.33 % of 2 units; remainders tie at equal shares.
    shares = [(12, 3333), (11, 3333), (10, 3334)]
    assert split_amount(2, shares) == {10: 1, 11: 1, 12: 0}
    # Equal shares and equal remainders: the lowest owner id wins.
    assert split_amount(1, [(5, 5000), (4, 5000)]) == {4: 1, 5: 0}


def test_split_of_zero_gives_zero_to_everyone() -> None:
    assert split_amount(0, [(1, 6000), (2, 4000)]) == {1: 0, 2: 0}


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        ([(1, 5000), (2, 3000)], "add up to 8000"),
        ([(1, 6000), (2, 5000)], "add up to 11000"),
        ([(1, 10000), (2, 0)], "must be positive"),
        ([(1, 5000), (1, 5000)], "appears twice"),
        ([], "no shares"),
    ],
)
def test_split_refuses_shares_that_are_not_100_percent(
    shares: list[tuple[int, int]], message: str
) -> None:
    with pytest.raises(ShareError, match=message):
        split_amount(1000, shares)
