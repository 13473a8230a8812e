from typing import Any

from flask import Response

from market.api import MarketBlueprint, csv_response, json_or_csv
from market.auth import current_actor
from market.reports import service
from market.reports.schemas import ImpactQuerySchema, ImpactReportSchema

blp = MarketBlueprint("reports", __name__, url_prefix="/api/v1", description="Reports (operators)")


@blp.route("/reports/impact", methods=["GET"])
@blp.authenticated
@blp.arguments(ImpactQuerySchema, location="query")
@blp.response(200, ImpactReportSchema)
@blp.doc(**json_or_csv(ImpactReportSchema, "The report, as JSON or (format=csv) a CSV download"))
def impact(args: dict[str, Any]) -> dict[str, Any] | Response:
    """Kg sold, farms and farmers paid, sales, premiums and payouts per county or programme (operators)

    With format=csv, the same as a CSV download, amounts in currency units."""
    wanted = args.pop("format")
    report = service.impact(current_actor(), **args)
    if wanted == "csv":
        rows = service.impact_rows(report)
        name = f"impact-{args['group_by']}-{args['start']}-{args['end']}.csv"
        return csv_response(rows, service.CSV_COLUMNS[args["group_by"]], name)
    return report
