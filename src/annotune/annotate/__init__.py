"""The annotation workbench: a database of projects, records and annotations, a JSON API and server-rendered pages.

Layers, each importing only the ones above it:

``schema`` / ``db``
    tables, named migrations, engines for SQLite (WAL) and PostgreSQL.
``tasks``
    the five task types: what a record holds, what an annotation holds, how each is checked.
``store`` / ``queue`` / ``review`` / ``importing`` / ``exporting`` / ``stats`` / ``suggest`` / ``backup``
    operations on the database, one transaction each; no web code.
``app`` / ``api`` / ``pages``
    the FastAPI application: authentication, the JSON API and the HTML pages.
"""
