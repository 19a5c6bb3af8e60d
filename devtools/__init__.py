"""Dev tools: synthetic bars and marts, the dbt harness, scratch databases, the calendar and sample-file generators.

Nothing in the product packages (ingest, warehouse_db, training) imports from here; tests and benchmarks do.
"""
