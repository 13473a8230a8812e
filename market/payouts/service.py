"""Payout rules, one module per seam: `accounts` (how a farm is paid),
`runs` (what each farm is owed, paid in runs), `transfers` (paying and
reversing), `statements` (reading). Routes and tasks use them through here.
Every amount a payout pays or takes back is a farm entry
(market/settlement/models.py) naming the payout or reversal that settled it.
"""

from market.payouts.accounts import (
    account_updated,
    connect_account,
    connect_payout_account,
    flag_account,
    get_payout_account,
    mask_account_number,
)
from market.payouts.models import PayoutNotFound
from market.payouts.runs import create_run, run_cutoff
from market.payouts.statements import (
    BANK_FILE_COLUMNS,
    STATEMENT_COLUMNS,
    bank_file,
    count_needing_attention,
    get_payout,
    get_run,
    list_payouts,
    list_runs,
    statement,
    statement_rows,
)
from market.payouts.transfers import (
    KEY_LIFETIME,
    confirm_bank_transfer,
    dispatch_run,
    flag,
    flag_for_follow_up,
    flag_reversal,
    retry_payout,
    reverse,
    transfer,
)

__all__ = [
    "BANK_FILE_COLUMNS",
    "KEY_LIFETIME",
    "STATEMENT_COLUMNS",
    "PayoutNotFound",
    "account_updated",
    "bank_file",
    "confirm_bank_transfer",
    "connect_account",
    "connect_payout_account",
    "count_needing_attention",
    "create_run",
    "dispatch_run",
    "flag",
    "flag_account",
    "flag_for_follow_up",
    "flag_reversal",
    "get_payout",
    "get_payout_account",
    "get_run",
    "list_payouts",
    "list_runs",
    "mask_account_number",
    "retry_payout",
    "reverse",
    "run_cutoff",
    "statement",
    "statement_rows",
    "transfer",
]
