"""Warehouse engines beside DuckDB: the raw landing, row rules and golden tables on Spark."""
