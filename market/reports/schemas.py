from __future__ import annotations

from datetime import date

import marshmallow as ma
from marshmallow import fields, validate

from market.api import StrictSchema

# (The latest day is the API's, market.api.LATEST_DAY: a day's end is the
# next day's start, which must exist as a date.)
DAYS = validate.Range(min=date(1970, 1, 1))


class ImpactQuerySchema(StrictSchema):
    start = fields.Date(
        required=True, data_key="from", validate=DAYS, metadata={"description": "First business day (MARKET_TIMEZONE)."}
    )
    end = fields.Date(
        required=True, data_key="to", validate=DAYS, metadata={"description": "Last business day (MARKET_TIMEZONE)."}
    )
    group_by = fields.String(load_default="county", validate=validate.OneOf(["county", "programme"]))
    format = fields.String(
        load_default="json", validate=validate.OneOf(["json", "csv"]), metadata={"description": "csv: a download."}
    )


class ImpactFiguresSchema(ma.Schema):
    grams_sold = fields.Integer(required=True, metadata={"description": "Captured less refunded, in grams."})
    sales = fields.Integer(required=True, metadata={"description": "Produce captured less refunded, minor units."})
    premiums_paid = fields.Integer(required=True)
    premiums_reserved = fields.Integer(
        required=True, metadata={"description": "Sponsor budget held for unpaid lines of orders placed in the period."}
    )
    payouts_made = fields.Integer(required=True)
    farms_paid = fields.Integer(required=True)
    farmers_paid = fields.Integer(required=True)


class ImpactRowSchema(ImpactFiguresSchema):
    province = fields.String()
    county = fields.String(metadata={"description": "The farm's county (group_by=county)."})
    programme_id = fields.Integer()
    programme = fields.String()
    sponsor = fields.String()
    funded_by = fields.String()


class ImpactReportSchema(ma.Schema):
    period_from = fields.Date(required=True)
    period_to = fields.Date(required=True)
    group_by = fields.String(required=True)
    currency = fields.String(required=True)
    rows = fields.List(fields.Nested(ImpactRowSchema), required=True)
    totals = fields.Nested(
        ImpactFiguresSchema,
        required=True,
        metadata={
            "description": "The rows added up, the farms and farmers paid counted once over the period. By "
            "programme, a line that earned from two programmes is in both rows, so its produce and sales are in "
            "the totals twice; by county, every line once."
        },
    )
