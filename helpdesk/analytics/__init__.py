"""Reporting and analytics: ticket facts and hourly rollups kept by the persisting
transaction (`facts`), their rebuild from the rows (`rebuild`), the measures read from the
rollups (`measures`, `queries`) and log-bucketed histograms for percentiles (`histogram`)."""
