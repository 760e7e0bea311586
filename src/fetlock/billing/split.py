"""Split an amount of money between owners by the largest-remainder method.

Shares are in hundredths of a percent (``FULL_SHARE`` is 100 %) and amounts in
integer minor units. Each owner first gets the floor of their exact share.
The minor units left over go, one each, to the owners with the largest
fractional remainders. Ties go to the larger share, then to the smaller owner id, so the
same input always gives the same result.
"""

from __future__ import annotations

from collections.abc import Sequence

from fetlock.practice.models import FULL_SHARE


class ShareError(ValueError):
    """The shares cannot split an amount: not positive, or not adding up to 100 %."""


def check_shares(shares: Sequence[tuple[int, int]]) -> None:
    """Raise ``ShareError`` unless every share is positive and they sum to 100 %."""
    if not shares:
        raise ShareError("there are no shares to split between")
    keys = [key for key, _ in shares]
    if len(set(keys)) != len(keys):
        raise ShareError(f"an owner appears twice among the shares: {keys!r}")
    for key, share in shares:
        if share <= 0:
            raise ShareError(
                f"the share of {key!r} is {share}; every share must be positive"
            )
    total = sum(share for _, share in shares)
    if total != FULL_SHARE:
        raise ShareError(
            f"the shares add up to {total} hundredths of a percent, not "
            f"{FULL_SHARE} (100 %)"
        )


def split_amount(amount: int, shares: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Split ``amount`` by ``shares`` so that the parts add up to it exactly.

    Parameters
    ----------
    amount
        The amount in minor units. A negative amount (a credit) is split as
        its absolute value and every part negated, so a credit line mirrors
        the charge it cancels owner by owner.
    shares
        ``(owner id, share)`` pairs; shares in hundredths of a percent summing
        to ``FULL_SHARE``.

    Returns
    -------
    dict
        Each owner's part. Every part differs from the key's exact share of
        ``amount`` by less than one minor unit.
    """
    check_shares(shares)
    if amount < 0:
        return {key: -part for key, part in split_amount(-amount, shares).items()}

    parts: dict[int, int] = {}
    remainders: list[tuple[int, int, int]] = []
    for key, share in shares:
        whole, remainder = divmod(amount * share, FULL_SHARE)
        parts[key] = whole
        remainders.append((remainder, share, key))

    # Largest remainder first; ties to the larger share, then the smaller owner id.
    left_over = amount - sum(parts.values())
    remainders.sort(key=lambda item: (-item[0], -item[1], item[2]))
    for _, _, key in remainders[:left_over]:
        parts[key] += 1
    return parts
